"""Typed views of what the openai SDK returns, for assertions in the end-to-end tests."""

from __future__ import annotations

from openai.types.chat import ChatCompletion, ChatCompletionMessageFunctionToolCall


def function_calls(completion: ChatCompletion) -> list[ChatCompletionMessageFunctionToolCall]:
    """The tool calls of the first choice ([] when it has none); each must be a function call,
    the only kind the fake upstream sends."""
    calls = completion.choices[0].message.tool_calls or []
    functions = [c for c in calls if isinstance(c, ChatCompletionMessageFunctionToolCall)]
    assert len(functions) == len(calls), f"not all function calls: {calls}"
    return functions
