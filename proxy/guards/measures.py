"""Units and currencies, month and weekday names, number and ordinal words."""

from __future__ import annotations

from proxy.guards.lexicon import word_list, word_set

# Units and currencies: canonical -> single-word forms. SHORT_UNITS are also ordinary words
# ("m", "in", "day") and count only right after a number; UNIT_SYMBOLS and UNIT_PHRASES are
# found in the raw text.
UNITS: dict[str, str] = {
    "km": "km|kms|kilomet(?:er|re)s?",
    "mile": "miles?",
    "m": "met(?:er|re)s?",
    "cm": "cm|centimet(?:er|re)s?",
    "mm": "mm|millimet(?:er|re)s?",
    "inch": "inch|inches",
    "ft": "ft|foot|feet",
    "yard": "yards?|yds?",
    "kg": "kgs?|kilos?|kilogram(?:me)?s?",
    "g": "gram(?:me)?s?",
    "mg": "mg|milligrams?",
    "lb": "lbs?|pounds?",
    "oz": "oz|ounces?",
    "ton": "tons?|tonnes?",
    "l": "lit(?:er|re)s?",
    "ml": "millilit(?:er|re)s?",
    "gallon": "gallons?",
    "tbsp": "tbsp|tablespoons?",
    "tsp": "tsp|teaspoons?",
    "c": "celsius|centigrade",
    "f": "fahrenheit",
    "kelvin": "kelvins?",
    "degree": "degrees?",
    "kb": "kb|kilobytes?",
    "mb": "mb|megabytes?",
    "gb": "gb|gigabytes?|gigs?",
    "tb": "tb|terabytes?",
    "bit": "bits?",
    "mbps": "mbps",
    "gbps": "gbps",
    "hz": "hz|hertz",
    "mhz": "mhz",
    "ghz": "ghz",
    "w": "watts?",
    "kw": "kw|kilowatts?",
    "kwh": "kwh",
    "mah": "mah",
    "v": "volts?",
    "kcal": "kcal|calories|calorie",
    "mph": "mph",
    "kmh": "kph|kmph",
    "ms": "milliseconds?",
    "second": "seconds|secs?",
    "minute": "minutes?|mins",
    "hour": "hours?|hrs?",
    "day": "days",
    "week": "weeks",
    "month": "months",
    "year": "years|yrs",
    "decade": "decades",
    "century": "centuries",
    "percent": "percent",
    "usd": "usd|dollars?|bucks",
    "eur": "eur|euros?",
    "gbp": "gbp|sterling",
    "inr": "inr|rupees?|rs|lakhs?|crores?",
    "jpy": "jpy|yen",
    "cny": "cny|rmb|yuan",
    "btc": "btc|bitcoins?",
    "cent": "cents?",
    "acre": "acres?",
    "hectare": "hectares?",
}
SHORT_UNITS: dict[str, str] = {
    "m": "m",
    "g": "g",
    "l": "l",
    "ml": "ml",
    "ms": "ms",
    "mile": "mi",
    "second": "s|sec|second",
    "minute": "min",
    "hour": "h|hr|hour",
    "day": "day",
    "week": "week",
    "month": "month",
    "year": "year|yr",
    "w": "w",
    "v": "v",
    "k": "k",
    "inch": "in",
}
UNIT_SYMBOLS: dict[str, str] = {
    "c": "°\\s?c\\b|℃",
    "f": "°\\s?f\\b|℉",
    "degree": "°",
    "percent": "%",
    "usd": "\\$",
    "eur": "€",
    "gbp": "£",
    "inr": "₹",
    "jpy": "¥",
}
UNIT_PHRASES: dict[str, str] = {
    "mph": "miles per hour",
    "kmh": "km/h|kilomet(?:er|re)s per hour",
    "percent": "per cent",
    "c": "degrees? c",
    "f": "degrees? f",
    "sqft": "sq\\.? ?f(?:ee)?t|square f(?:ee|oo)t",
    "sqm": "sq\\.? ?m|square met(?:er|re)s?",
    **{  # a rate: "per day", "twice a week", "every month"
        unit: rf"\b(?:per|a|an|each|every) {unit}\b"
        for unit in ("second", "minute", "hour", "day", "week", "month", "year")
    },
}
UNIT_PHRASE_TRIGGERS = (
    "per",
    "/h",
    "degree",
    "sq",
    "square",
    "second",
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "year",
)

MONTHS = word_set(
    "january february march april may june july august september october november december"
)
MONTH_ABBR = {
    "jan": "january",
    "feb": "february",
    "mar": "march",
    "apr": "april",
    "jun": "june",
    "jul": "july",
    "aug": "august",
    "sep": "september",
    "sept": "september",
    "oct": "october",
    "nov": "november",
    "dec": "december",
}
WEEKDAYS = word_set("monday tuesday wednesday thursday friday saturday sunday")

NUMBER_WORDS: dict[str, int] = {
    **{
        w: i
        for i, w in enumerate(
            word_list(
                "zero one two three four five six seven eight nine ten eleven twelve thirteen "
                "fourteen fifteen sixteen seventeen eighteen nineteen"
            )
        )
    },
    **{
        w: 10 * i
        for i, w in enumerate(word_list("twenty thirty forty fifty sixty seventy eighty ninety"), 2)
    },
}
MULTIPLIERS = {
    "hundred": 100,
    "thousand": 1000,
    "million": 10**6,
    "billion": 10**9,
    "trillion": 10**12,
    "dozen": 12,
}
ORDINAL_WORDS: dict[str, int] = {
    **{
        w: i
        for i, w in enumerate(
            word_list(
                "first second third fourth fifth sixth seventh eighth ninth tenth eleventh "
                "twelfth thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth "
                "nineteenth twentieth"
            ),
            1,
        )
    },
    "thirtieth": 30,
    "fortieth": 40,
    "fiftieth": 50,
    "hundredth": 100,
}
