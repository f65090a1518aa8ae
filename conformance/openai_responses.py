"""The Responses API through the official OpenAI Python SDK, unmodified: create, stream (the
SDK's accumulator rebuilds the final response), a function-tool loop with previous_response_id,
the same loop streamed with store=False and the whole input, a custom (freeform) tool, and the
stored response's retrieve, input_items and delete. Run by tests/it/conformance.rs against
qwen2api and a fake chat.qwen.ai that plays the model's side (its answers are queued there in
this script's order); it fails (exit 1) on the first surprise.

Environment: QWEN2API_BASE_URL (ending in /v1), QWEN2API_KEY.
"""

import os
import sys

import openai

MODEL = "qwen3.7-plus"
SHELL = {
    "type": "function",
    "name": "shell",
    "description": "Runs a command.",
    "parameters": {
        "type": "object",
        "required": ["command"],
        "properties": {"command": {"type": "array", "items": {"type": "string"}}},
    },
    "strict": False,
}
PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edits files with a patch.",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch"},
}


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)


def create(client):
    r = client.responses.create(model=MODEL, input="Say hi")
    check(r.status == "completed", f"status {r.status}")
    check(r.output_text == "Hi!", f"output_text {r.output_text!r}")
    check(r.id.startswith("resp_"), f"id {r.id}")
    check(r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens, "usage total")
    print("create ok")
    return r


def stream(client):
    seen = []
    with client.responses.stream(
        model=MODEL + "-thinking",
        input="Hi",
        reasoning={"effort": "high", "summary": "auto"},
        include=["reasoning.encrypted_content"],
    ) as events:
        for ev in events:
            seen.append((ev.type, ev.sequence_number))
        final = events.get_final_response()
    numbers = [n for _, n in seen]
    check(numbers == list(range(len(seen))), f"sequence numbers {numbers}")
    check(seen[0][0] == "response.created" and seen[-1][0] == "response.completed", f"{seen}")
    check(final.output_text == "Hello", f"final text {final.output_text!r}")
    kinds = [o.type for o in final.output]
    check(kinds == ["reasoning", "message"], f"items {kinds}")
    check(final.output[0].summary[0].text == "Think.", "reasoning summary")
    check(final.output[0].encrypted_content.startswith("qwen2api.r1."), "encrypted_content")
    print("stream ok")


def loop_with_previous_response_id(client):
    first = client.responses.create(
        model=MODEL, instructions="Be brief.", input="List files", tools=[SHELL]
    )
    calls = [o for o in first.output if o.type == "function_call"]
    check(len(calls) == 1 and calls[0].name == "shell", f"calls {first.output}")
    check(calls[0].arguments == '{"command":["ls"]}', f"arguments {calls[0].arguments}")
    second = client.responses.create(
        model=MODEL,
        instructions="Be brief.",
        tools=[SHELL],
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "a.txt\nb.txt"}],
    )
    check(second.output_text == "Two files.", f"answer {second.output_text!r}")
    check(second.previous_response_id == first.id, "previous_response_id echoed")
    print("loop with previous_response_id ok")


def loop_stateless_streamed(client):
    history = [{"role": "user", "content": "List files"}]
    with client.responses.stream(
        model=MODEL, input=history, tools=[SHELL], store=False
    ) as events:
        args = "".join(ev.delta for ev in events if ev.type == "response.function_call_arguments.delta")
        first = events.get_final_response()
    calls = [o for o in first.output if o.type == "function_call"]
    check(len(calls) == 1, f"calls {first.output}")
    check(calls[0].arguments == args == '{"command":["ls"]}', f"arguments {calls[0].arguments!r} {args!r}")
    history += [o.model_dump(exclude_none=True) for o in first.output]
    history.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": "a.txt"})
    with client.responses.stream(model=MODEL, input=history, tools=[SHELL], store=False) as events:
        for _ in events:
            pass
        second = events.get_final_response()
    check(second.output_text == "Two files.", f"answer {second.output_text!r}")
    try:
        client.responses.retrieve(first.id)
        check(False, "a store=False response was kept")
    except openai.NotFoundError:
        pass
    print("stateless streamed loop ok")


def custom_tool(client):
    r = client.responses.create(model=MODEL, input="add a.txt", tools=[PATCH])
    check(len(r.output) == 1 and r.output[0].type == "custom_tool_call", f"{r.output}")
    check(r.output[0].name == "apply_patch", "custom tool name")
    check(r.output[0].input == "*** Begin Patch\n*** End Patch", f"input {r.output[0].input!r}")
    print("custom tool ok")


def stored(client, r):
    got = client.responses.retrieve(r.id)
    check(got.id == r.id and got.output_text == r.output_text, "retrieve")
    items = client.responses.input_items.list(r.id)
    check([i.type for i in items.data] == ["message"], f"input items {items.data}")
    check(items.data[0].content[0].text == "Say hi", "input item text")
    deleted = client.responses.delete(r.id)
    check(deleted is None or getattr(deleted, "deleted", True), f"delete {deleted}")
    try:
        client.responses.retrieve(r.id)
        check(False, "retrieve after delete")
    except openai.NotFoundError:
        pass
    print("retrieve, input_items, delete ok")


def main():
    client = openai.OpenAI(
        base_url=os.environ["QWEN2API_BASE_URL"], api_key=os.environ["QWEN2API_KEY"], max_retries=0
    )
    r = create(client)
    stream(client)
    loop_with_previous_response_id(client)
    loop_stateless_streamed(client)
    custom_tool(client)
    stored(client, r)


if __name__ == "__main__":
    main()
