// The openai Node SDK through semcache, as an application would call it. Run by
// tests/e2e/test_node_sdk.py with OPENAI_BASE_URL pointing at the proxy; prints one JSON report
// of what the SDK saw, which the test checks (and counts the upstream's calls itself).
import OpenAI from "openai";

const client = new OpenAI({ maxRetries: 0 }); // OPENAI_BASE_URL and OPENAI_API_KEY from the env
const tag = process.env.SEMCACHE_TEST_TAG;
const report = {};

async function chat(question, extra = {}) {
  const { data, response } = await client.chat.completions
    .create({ model: "gpt-fake", messages: [{ role: "user", content: question }], ...extra })
    .withResponse();
  return {
    cache: response.headers.get("x-cache"),
    lookup: response.headers.get("x-cache-lookup"),
    content: data.choices[0].message.content,
    toolCalls: data.choices[0].message.tool_calls ?? null,
    usage: data.usage ?? null,
  };
}

async function stream(question, includeUsage) {
  const extra = includeUsage ? { stream_options: { include_usage: true } } : {};
  const { data, response } = await client.chat.completions
    .create({
      model: "gpt-fake",
      messages: [{ role: "user", content: question }],
      stream: true,
      ...extra,
    })
    .withResponse();
  let content = "";
  let usage = null;
  let chunks = 0;
  for await (const chunk of data) {
    chunks += 1;
    content += chunk.choices[0]?.delta?.content ?? "";
    if (chunk.usage) usage = chunk.usage;
  }
  return { cache: response.headers.get("x-cache"), content, usage, chunks };
}

const first = `What is the capital of France? (${tag})`;
report.plain = [await chat(first), await chat(first)];
report.streamWithUsage = await stream(first, true);

const second = `How tall is the Eiffel Tower? (${tag})`;
report.streamWithoutUsage = await stream(second, false);
report.plainAfterStream = await chat(second);

const tools = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "Weather in a city",
      parameters: { type: "object", properties: { city: { type: "string" } } },
    },
  },
];
const weather = `Weather in Paris? (${tag})`;
report.tools = [
  await chat(weather, { model: "fake-tools", tools }),
  await chat(weather, { model: "fake-tools", tools }),
];

const inputs = [`alpha ${tag}`, `beta ${tag}`];
report.embeddings = [];
for (let i = 0; i < 2; i += 1) {
  const { data, response } = await client.embeddings
    .create({ model: "fake-embed", input: inputs })
    .withResponse();
  report.embeddings.push({
    cache: response.headers.get("x-cache"),
    dims: data.data.map((d) => d.embedding.length),
    first: data.data[0].embedding.slice(0, 3),
  });
}

try {
  await client.chat.completions.create({ model: "gpt-fake", messages: [] });
  report.badRequest = { status: null };
} catch (error) {
  report.badRequest = {
    status: error.status ?? null,
    name: error.constructor.name,
    message: error.error?.message ?? error.message,
  };
}

console.log(JSON.stringify(report));
