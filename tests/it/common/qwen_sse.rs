//! Byte-exact builders for chat.qwen.ai completion SSE events, in the captures' own spacing.

// The upstream serialises with Python's `json.dumps` defaults (`", "` and `": "` separators,
// UTF-8 kept raw) except for the `response.created` object, which mixes both styles. The
// builders therefore assemble the JSON text by hand and use serde_json only to escape strings.

/// Response id used by the composites (the one in `capture_fast_answer.sse`).
pub const RID: &str = "bceb5c39-c6ae-4fee-a0f9-8df8afd67ca9";
/// Response id of the second candidate in [`dual_responses`].
pub const RID1: &str = "4c2b7c86-2d3e-4f51-9a6b-7c8d9e0f1a2b";
/// Chat id used by the composites (the one in `capture_fast_answer.sse`).
pub const CHAT_ID: &str = "605fdeab-bcc7-4b00-ab4c-64acac491286";
/// Parent (stored user message) id used by the composites.
pub const PARENT_ID: &str = "09897e80-02f2-4786-90b5-23e83e0c8a99";
/// `request_id` used by [`business_error`].
pub const REQUEST_ID: &str = "7e6d5c4b-3a29-4817-a6f5-e4d3c2b1a090";
/// Timestamp carried by every generated event.
pub const TIMESTAMP: u64 = 1_780_468_951;
/// `input_tokens` reported by every generated usage object.
pub const INPUT_TOKENS: u64 = 1049;

/// A JSON string literal, escaped the way both `serde_json` and Python agree on.
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("a str always serialises")
}

/// A JSON array of strings with Python's `", "` separator.
fn q_list(items: &[&str]) -> String {
    let inner: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", inner.join(", "))
}

fn event(json: &str) -> String {
    format!("data: {json}\n\n")
}

/// The first event of every stream, with the capture's mixed spacing and trailing space.
pub fn created(chat_id: &str, parent_id: &str, response_id: &str, index: &str) -> String {
    format!(
        "data: {{\"response.created\":{{\"chat_id\": {}, \"parent_id\": {}, \"response_id\":{}, \
         \"response_index\": {}}}}} \n\n",
        q(chat_id),
        q(parent_id),
        q(response_id),
        q(index)
    )
}

/// Full usage object as on the capture's answer typing events.
fn answer_usage(output_tokens: u64) -> String {
    format!(
        "{{\"input_tokens\": {INPUT_TOKENS}, \"output_tokens\": {output_tokens}, \"characters\": 0, \
         \"total_tokens\": {}, \"input_tokens_details\": {{\"text_tokens\": {INPUT_TOKENS}}}, \
         \"output_tokens_details\": {{\"text_tokens\": {output_tokens}}}, \
         \"prompt_tokens_details\": {{\"cached_tokens\": 0}}}}",
        INPUT_TOKENS + output_tokens
    )
}

/// An incremental `answer` typing event with running-total usage.
pub fn answer(response_id: &str, text: &str, output_tokens: u64) -> String {
    event(&format!(
        "{{\"choices\": [{{\"delta\": {{\"role\": \"assistant\", \"content\": {}, \
         \"phase\": \"answer\", \"status\": \"typing\"}}}}], \"response_id\": {}, \"usage\": {}, \
         \"timestamp\": {TIMESTAMP}}}",
        q(text),
        q(response_id),
        answer_usage(output_tokens)
    ))
}

/// An `answer` typing event with empty content (the capture has two before the end).
pub fn empty_typing(response_id: &str, output_tokens: u64) -> String {
    answer(response_id, "", output_tokens)
}

/// The answer `finished` event: no usage, no timestamp, keys reordered.
pub fn finished(response_id: &str) -> String {
    event(&format!(
        "{{\"choices\": [{{\"delta\": {{\"content\": \"\", \"role\": \"assistant\", \
         \"status\": \"finished\", \"phase\": \"answer\"}}}}], \"response_id\": {}}}",
        q(response_id)
    ))
}

/// A `thinking_summary` typing event; `titles` and `thoughts` are the cumulative arrays.
pub fn summary(
    response_id: &str,
    titles: &[&str],
    thoughts: &[&str],
    reasoning_tokens: u64,
) -> String {
    let output = reasoning_tokens + 2;
    event(&format!(
        "{{\"choices\": [{{\"delta\": {{\"role\": \"assistant\", \"content\": \"\", \
         \"phase\": \"thinking_summary\", \"extra\": {{\"summary_title\": {{\"content\": {}}}, \
         \"summary_thought\": {{\"content\": {}}}}}, \"status\": \"typing\"}}}}], \
         \"response_id\": {}, \"usage\": {{\"input_tokens\": {INPUT_TOKENS}, \
         \"output_tokens\": {output}, \"total_tokens\": {}, \"output_tokens_details\": \
         {{\"reasoning_tokens\": {reasoning_tokens}, \"text_tokens\": {output}}}}}, \
         \"timestamp\": {TIMESTAMP}}}",
        q_list(titles),
        q_list(thoughts),
        q(response_id),
        INPUT_TOKENS + output
    ))
}

/// The `thinking_summary` finished event (no usage, with timestamp).
pub fn summary_finished(response_id: &str) -> String {
    event(&format!(
        "{{\"choices\": [{{\"delta\": {{\"role\": \"assistant\", \"content\": \"\", \
         \"phase\": \"thinking_summary\", \"status\": \"finished\"}}}}], \"response_id\": {}, \
         \"timestamp\": {TIMESTAMP}}}",
        q(response_id)
    ))
}

/// A legacy `think` typing event with incremental reasoning text in `content`.
pub fn think(response_id: &str, text: &str) -> String {
    event(&format!(
        "{{\"choices\": [{{\"delta\": {{\"role\": \"assistant\", \"content\": {}, \
         \"phase\": \"think\", \"status\": \"typing\"}}}}], \"response_id\": {}, \
         \"timestamp\": {TIMESTAMP}}}",
        q(text),
        q(response_id)
    ))
}

/// The legacy `think` finished event.
pub fn think_finished(response_id: &str) -> String {
    event(&format!(
        "{{\"choices\": [{{\"delta\": {{\"role\": \"assistant\", \"content\": \"\", \
         \"phase\": \"think\", \"status\": \"finished\"}}}}], \"response_id\": {}, \
         \"timestamp\": {TIMESTAMP}}}",
        q(response_id)
    ))
}

/// The search frame of §6.8; each result is `(url, title, hostname)`, the snippet is derived
/// from the title and the date is the fixed `" (2026-06-09)"`.
pub fn web_search(response_id: &str, results: &[(&str, &str, &str)]) -> String {
    let items: Vec<String> = results
        .iter()
        .map(|(url, title, hostname)| {
            format!(
                "{{\"url\": {}, \"title\": {}, \"snippet\": {}, \"hostname\": {}, \
                 \"date\": \" (2026-06-09)\"}}",
                q(url),
                q(title),
                q(&format!("Snippet of {title}")),
                q(hostname)
            )
        })
        .collect();
    event(&format!(
        "{{\"choices\": [{{\"delta\": {{\"role\": \"function\", \"name\": \"web_search\", \
         \"content\": \"\", \"phase\": \"web_search\", \"status\": \"typing\", \"extra\": \
         {{\"web_search_info\": [{}]}}}}}}], \"response_id\": {}}}",
        items.join(", "),
        q(response_id)
    ))
}

/// An in-stream error event in the §7.2 form, tagged with [`RID`].
pub fn error_event(code: &str, message: &str) -> String {
    event(&format!(
        "{{\"error\": {{\"code\": {}, \"message\": {}}}, \"response_id\": {}}}",
        q(code),
        q(message),
        q(RID)
    ))
}

/// A business-error JSON body (§7.1), without `data: ` and without newlines; usable both as
/// an HTTP body and, wrapped by the caller in `data: …\n\n`, as an in-stream event.
pub fn business_error(code: &str, details: &str) -> String {
    format!(
        "{{\"success\": false, \"request_id\": {}, \"data\": {{\"code\": {}, \"details\": {}}}}}",
        q(REQUEST_ID),
        q(code),
        q(details)
    )
}

/// Concatenates events into one stream body.
pub fn stream(events: &[String]) -> String {
    events.concat()
}

/// Answer events for `parts` with output tokens counting up from `first_tokens + 1`, then
/// two empty typing events and the finished event.
fn answer_tail(response_id: &str, parts: &[&str], first_tokens: u64) -> Vec<String> {
    let mut events = Vec::new();
    let mut tokens = first_tokens;
    for part in parts {
        tokens += 1;
        events.push(answer(response_id, part, tokens));
    }
    events.push(empty_typing(response_id, tokens));
    events.push(empty_typing(response_id, tokens));
    events.push(finished(response_id));
    events
}

/// Same shape as `capture_fast_answer.sse`: `fast_answer(&["Hi", "!"])` is that file.
pub fn fast_answer(parts: &[&str]) -> String {
    let mut events = vec![created(CHAT_ID, PARENT_ID, RID, "0")];
    events.extend(answer_tail(RID, parts, 0));
    stream(&events)
}

/// Created, one `thinking_summary` event per step (each step is the cumulative thought array;
/// titles are `Step 1`, `Step 2`, … of the same length), the summary-finished event, then the
/// answer as in [`fast_answer`].
pub fn thinking_answer(thought_steps: &[&[&str]], parts: &[&str]) -> String {
    let mut events = vec![created(CHAT_ID, PARENT_ID, RID, "0")];
    let mut reasoning = 0;
    for (thoughts, step) in thought_steps.iter().zip(1u64..) {
        let titles: Vec<String> = (1..=thoughts.len()).map(|n| format!("Step {n}")).collect();
        let titles: Vec<&str> = titles.iter().map(String::as_str).collect();
        reasoning = 10 * step;
        events.push(summary(RID, &titles, thoughts, reasoning));
    }
    events.push(summary_finished(RID));
    events.extend(answer_tail(RID, parts, reasoning));
    stream(&events)
}

/// Two candidate responses (§6.7): created for index "0" ([`RID`]) and "1" ([`RID1`]), then the
/// two responses' frames (answers, then finished) interleaved starting with response 1.
pub fn dual_responses(parts0: &[&str], parts1: &[&str]) -> String {
    let frames = |rid: &str, parts: &[&str]| -> Vec<String> {
        let mut out: Vec<String> = parts
            .iter()
            .zip(1..)
            .map(|(part, n)| answer(rid, part, n))
            .collect();
        out.push(finished(rid));
        out
    };
    let zero = frames(RID, parts0);
    let one = frames(RID1, parts1);
    let mut events = vec![
        created(CHAT_ID, PARENT_ID, RID, "0"),
        created(CHAT_ID, PARENT_ID, RID1, "1"),
    ];
    for i in 0..zero.len().max(one.len()) {
        events.extend(one.get(i).cloned());
        events.extend(zero.get(i).cloned());
    }
    stream(&events)
}
