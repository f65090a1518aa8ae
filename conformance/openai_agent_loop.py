"""An agent loop through the official OpenAI Python SDK, unmodified: the model calls a tool,
gets its result, calls another, then answers. Run by tests/it/conformance.rs against qwen2api
and a fake chat.qwen.ai that plays the model's side; it fails (exit 1) on the first surprise.

Environment: QWEN2API_BASE_URL (ending in /v1), QWEN2API_KEY, and STREAM=1 for the streamed
run.
"""

import json
import os
import sys

import openai

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Reads a file.",
            "parameters": {
                "type": "object",
                "required": ["path"],
                "properties": {"path": {"type": "string"}},
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "grep",
            "description": "Searches files for a pattern.",
            "parameters": {
                "type": "object",
                "required": ["pattern"],
                "properties": {"pattern": {"type": "string"}},
            },
        },
    },
]

RESULTS = {"read_file": "fn main() {}", "grep": "src/main.rs:1: fn main() {}"}


def ask(client, messages, stream):
    """One turn: the assistant message as the SDK assembled it, and its finish reason."""
    if not stream:
        done = client.chat.completions.create(
            model="qwen3.7-plus", messages=messages, tools=TOOLS
        )
        choice = done.choices[0]
        return choice.message, choice.finish_reason
    with client.chat.completions.stream(
        model="qwen3.7-plus", messages=messages, tools=TOOLS
    ) as events:
        for _ in events:
            pass
        done = events.get_final_completion()
    choice = done.choices[0]
    return choice.message, choice.finish_reason


def main():
    stream = os.environ.get("STREAM") == "1"
    client = openai.OpenAI(
        base_url=os.environ["QWEN2API_BASE_URL"],
        api_key=os.environ["QWEN2API_KEY"],
        max_retries=0,
    )
    messages = [{"role": "user", "content": "Where is main defined?"}]
    called = []
    for _ in range(3):
        message, finish = ask(client, messages, stream)
        if not message.tool_calls:
            assert finish == "stop", finish
            assert message.content == "It is in src/main.rs.", message.content
            break
        assert finish == "tool_calls", finish
        assert len(message.tool_calls) == 1, message.tool_calls
        call = message.tool_calls[0]
        assert call.type == "function", call
        assert call.id.startswith("call_"), call.id
        arguments = json.loads(call.function.arguments)
        called.append((call.function.name, arguments))
        messages.append(message.model_dump(exclude_none=True))
        messages.append(
            {
                "role": "tool",
                "tool_call_id": call.id,
                "content": RESULTS[call.function.name],
            }
        )
    expected = [("grep", {"pattern": "fn main"}), ("read_file", {"path": "src/main.rs"})]
    assert called == expected, called
    print(f"agent loop ok (stream={stream}): {called}")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"assertion failed: {e!r}", file=sys.stderr)
        raise
