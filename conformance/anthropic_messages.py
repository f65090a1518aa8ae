"""The official Anthropic Python SDK, unmodified, against qwen2api's Messages API. Run by
tests/it/conformance.rs against qwen2api and a fake chat.qwen.ai that plays the model's side
(the Rust test scripts its answers in the order below); it fails (exit 1) on the first
surprise.

Environment: QWEN2API_BASE_URL (ending in /v1; the SDK adds /v1 itself), QWEN2API_KEY, and
PART, one of:

- messages: messages.create (text; with api_key and with auth_token), messages.stream (text;
  thinking with its signature), a tool loop non-streamed and one streamed (the first turn with
  thinking and the calls as input_json_delta), count_tokens, a wrong key;
- rate_limit: the upstream rate-limits every account: anthropic.RateLimitError;
- overloaded: no account can serve: 529 overloaded_error, create and stream; the error's
  message must contain EXPECT.
"""

import json
import os
import sys

import anthropic

MODEL = "claude-sonnet-4-5-20250929"

TOOLS = [
    {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "input_schema": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city's name."},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
    {
        "name": "get_time",
        "description": "The local time in a time zone.",
        "input_schema": {
            "type": "object",
            "properties": {"timezone": {"type": "string"}},
            "required": ["timezone"],
        },
    },
]

RESULTS = {"get_weather": "12 degrees, light rain", "get_time": "14:05"}


def base_url():
    url = os.environ["QWEN2API_BASE_URL"]
    return url[: -len("/v1")] if url.endswith("/v1") else url


def client(**auth):
    if not auth:
        auth = {"api_key": os.environ["QWEN2API_KEY"]}
    return anthropic.Anthropic(base_url=base_url(), max_retries=0, **auth)


def user(text):
    return {"role": "user", "content": text}


def check_text_message(msg, text):
    assert msg.type == "message", msg
    assert msg.role == "assistant", msg
    assert msg.id.startswith("msg_"), msg.id
    assert msg.model == MODEL, msg.model
    assert [b.type for b in msg.content] == ["text"], msg.content
    assert msg.content[0].text == text, msg.content[0].text
    assert msg.stop_reason == "end_turn", msg.stop_reason
    assert msg.stop_sequence is None, msg.stop_sequence
    assert msg.usage.input_tokens > 0, msg.usage
    assert msg.usage.output_tokens > 0, msg.usage
    assert msg.usage.cache_creation_input_tokens == 0, msg.usage
    assert msg.usage.cache_read_input_tokens == 0, msg.usage


def create_text():
    msg = client().messages.create(
        model=MODEL, max_tokens=1024, messages=[user("Say hello.")]
    )
    check_text_message(msg, "Hello from Qwen.")
    # The same key as a bearer token (Authorization: Bearer), as ANTHROPIC_AUTH_TOKEN sends it.
    bearer = client(auth_token=os.environ["QWEN2API_KEY"])
    msg = bearer.messages.create(
        model=MODEL, max_tokens=1024, messages=[user("Say hello again.")]
    )
    check_text_message(msg, "Hello again.")


class Streamed:
    """A streamed answer: the raw event types in order, the input_json_delta pieces, and the
    message the SDK's accumulator rebuilt."""

    def __init__(self, **kwargs):
        self.raw = []
        self.partial_json = []
        with client().messages.stream(model=MODEL, max_tokens=2048, **kwargs) as stream:
            for e in stream:
                # The SDK adds derived events (text, thinking, signature, input_json) next
                # to the raw ones; the raw ones are those of the wire.
                if e.type.startswith(("message_", "content_block_")):
                    self.raw.append(e.type)
                if e.type == "content_block_delta" and e.delta.type == "input_json_delta":
                    self.partial_json.append(e.delta.partial_json)
            self.final = stream.get_final_message()


def stream_text():
    s = Streamed(messages=[user("Count to three.")])
    raw, msg = s.raw, s.final
    check_text_message(msg, "One, two, three.")
    expected = ["message_start", "content_block_start"]
    expected += ["content_block_delta"] * raw.count("content_block_delta")
    expected += ["content_block_stop", "message_delta", "message_stop"]
    assert raw == expected, raw
    assert raw.count("content_block_delta") >= 2, raw


def stream_thinking():
    s = Streamed(
        messages=[user("Why is the sky blue?")],
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    raw, msg = s.raw, s.final
    assert [b.type for b in msg.content] == ["thinking", "text"], msg.content
    thinking = msg.content[0]
    assert thinking.thinking == "Light scatters.\n\nBlue scatters most.", thinking.thinking
    assert thinking.signature.startswith("qwen2api."), thinking.signature
    assert len(thinking.signature) > len("qwen2api."), thinking.signature
    assert msg.content[1].text == "Rayleigh scattering.", msg.content[1].text
    assert msg.stop_reason == "end_turn", msg.stop_reason
    assert raw[0] == "message_start" and raw[-2:] == ["message_delta", "message_stop"], raw
    assert raw.count("content_block_start") == 2 and raw.count("content_block_stop") == 2, raw


def tool_turn(messages, stream, thinking):
    extra = {"thinking": {"type": "enabled", "budget_tokens": 1024}} if thinking else {}
    if not stream:
        msg = client().messages.create(
            model=MODEL, max_tokens=2048, messages=messages, tools=TOOLS, **extra
        )
        return msg, None
    s = Streamed(messages=messages, tools=TOOLS, **extra)
    return s.final, s


def tool_loop(stream):
    """get_weather → result → get_time → result → text. Streamed, the first turn thinks and
    the calls come as input_json_delta."""
    messages = [user("What is the weather and the time in Oslo?")]
    called = []
    for turn in range(3):
        msg, streamed = tool_turn(messages, stream, thinking=stream and turn == 0)
        uses = [b for b in msg.content if b.type == "tool_use"]
        if not uses:
            assert [b.type for b in msg.content] == ["text"], msg.content
            assert msg.content[0].text == "Oslo: 12 degrees, light rain, 14:05.", msg.content
            assert msg.stop_reason == "end_turn", msg.stop_reason
            break
        assert msg.stop_reason == "tool_use", msg.stop_reason
        assert len(uses) == 1, msg.content
        use = uses[0]
        assert use.id.startswith("toolu_"), use.id
        called.append((use.name, use.input))
        if streamed:
            # The arguments came as input_json_delta, and the accumulator parsed them.
            assert streamed.partial_json, streamed.raw
            assert json.loads("".join(streamed.partial_json)) == use.input, streamed.partial_json
        if stream and turn == 0:
            types = [b.type for b in msg.content]
            assert types == ["thinking", "text", "tool_use"], types
            assert msg.content[0].signature.startswith("qwen2api."), msg.content[0]
            assert msg.content[1].text == "Let me check. ", msg.content[1].text
        # The assistant turn goes back as the SDK rebuilt it (thinking with its signature
        # included), then the result.
        messages.append(
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]}
        )
        messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": use.id,
                        "content": RESULTS[use.name],
                    }
                ],
            }
        )
    expected = [
        ("get_weather", {"city": "Oslo", "unit": "celsius"}),
        ("get_time", {"timezone": "Europe/Oslo"}),
    ]
    assert called == expected, called


def count_tokens():
    c = client()
    messages = [user("What is the weather in Oslo?")]
    bare = c.messages.count_tokens(model=MODEL, messages=messages)
    with_tools = c.messages.count_tokens(model=MODEL, messages=messages, tools=TOOLS)
    assert isinstance(bare.input_tokens, int) and bare.input_tokens > 0, bare
    assert with_tools.input_tokens > bare.input_tokens + 50, (bare, with_tools)
    print(f"count_tokens: {bare.input_tokens} bare, {with_tools.input_tokens} with tools")


def wrong_key():
    try:
        client(api_key="sk-wrong").messages.create(
            model=MODEL, max_tokens=16, messages=[user("hi")]
        )
    except anthropic.AuthenticationError as e:
        assert e.status_code == 401, e.status_code
        assert e.body["type"] == "error", e.body
        assert e.body["error"]["type"] == "authentication_error", e.body
    else:
        raise AssertionError("a wrong key was accepted")


def part_messages():
    create_text()
    stream_text()
    stream_thinking()
    tool_loop(stream=False)
    tool_loop(stream=True)
    count_tokens()
    wrong_key()


def part_rate_limit():
    try:
        client().messages.create(model=MODEL, max_tokens=16, messages=[user("hi")])
    except anthropic.RateLimitError as e:
        assert e.status_code == 429, e.status_code
        assert e.body["error"]["type"] == "rate_limit_error", e.body
        assert e.response.headers["retry-after"] == "7200", e.response.headers
    else:
        raise AssertionError("no RateLimitError")


def expect_overloaded(call):
    try:
        call()
    except anthropic.APIStatusError as e:
        # SDK 2.17 maps 529 to anthropic.OverloadedError, a subclass of InternalServerError
        # (and so of APIStatusError).
        assert type(e) is anthropic.OverloadedError, type(e)
        assert isinstance(e, anthropic.InternalServerError), type(e).__mro__
        assert e.status_code == 529, e.status_code
        assert e.body["type"] == "error", e.body
        assert e.body["error"]["type"] == "overloaded_error", e.body
        assert os.environ.get("EXPECT", "") in e.body["error"]["message"], e.body
    else:
        raise AssertionError("no error for an overloaded server")


def part_overloaded():
    c = client()
    expect_overloaded(
        lambda: c.messages.create(model=MODEL, max_tokens=16, messages=[user("hi")])
    )

    def streamed():
        with c.messages.stream(model=MODEL, max_tokens=16, messages=[user("hi")]) as s:
            for _ in s:
                pass

    expect_overloaded(streamed)


def main():
    part = os.environ.get("PART", "messages")
    {
        "messages": part_messages,
        "rate_limit": part_rate_limit,
        "overloaded": part_overloaded,
    }[part]()
    print(f"anthropic {anthropic.__version__}: {part} ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"assertion failed: {e!r}", file=sys.stderr)
        raise
