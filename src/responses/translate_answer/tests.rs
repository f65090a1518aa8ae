use serde_json::{Value, json};

use super::*;
use crate::conversation::Source;
use crate::responses::{Input, ResponsesRequest};

fn head(summary: bool, encrypted: bool, tools: &Value) -> Head {
    let req: ResponsesRequest =
        serde_json::from_value(json!({"model": "qwen", "input": "hi", "tools": tools})).unwrap();
    assert!(matches!(req.input, Some(Input::Text(_))));
    let items = crate::responses::read_items(&crate::responses::input_values(&req), 0).unwrap();
    let t = crate::responses::to_conversation(&req, &items, Vec::new(), None);
    Head {
        response: ResponseObject {
            id: "resp_1".into(),
            object: "response".into(),
            created_at: 1,
            status: Status::InProgress,
            completed_at: None,
            error: None,
            incomplete_details: None,
            instructions: None,
            max_output_tokens: None,
            model: "qwen".into(),
            output: Vec::new(),
            parallel_tool_calls: true,
            previous_response_id: None,
            reasoning: crate::responses::Reasoning::default(),
            store: true,
            temperature: None,
            text: json!({"format": {"type": "text"}}),
            tool_choice: json!("auto"),
            tools: Vec::new(),
            top_p: None,
            truncation: "disabled".into(),
            usage: None,
            user: None,
            metadata: serde_json::Map::new(),
        },
        input_estimate: 7,
        summary,
        encrypted,
        names: t.names,
    }
}

fn call(index: usize, id: &str, name: &str, args: &str) -> Vec<AnswerEvent> {
    vec![
        AnswerEvent::ToolCallStart {
            index,
            id: id.into(),
            name: name.into(),
        },
        AnswerEvent::ToolCallArguments {
            index,
            delta: args.into(),
        },
        AnswerEvent::ToolCallEnd { index },
    ]
}

/// The stream's events as (type, JSON), with the sequence numbers checked.
fn stream(head: Head, events: Vec<AnswerEvent>, finish: Finish) -> Vec<(String, Value)> {
    let mut enc = StreamEncoder::new(head);
    let mut out = Vec::new();
    enc.start(&mut out);
    for ev in events {
        enc.event(ev, &mut out);
    }
    enc.finish(finish, None, 0, &mut out);
    out.into_iter()
        .enumerate()
        .map(|(n, (name, data))| {
            let v: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(v["type"], name);
            assert_eq!(v["sequence_number"], n as u64, "{data}");
            (name.to_owned(), v)
        })
        .collect()
}

#[test]
fn reasoning_text_and_a_call_stream_as_items_in_order() {
    let mut events = vec![
        AnswerEvent::Reasoning("think".into()),
        AnswerEvent::Text("Hel".into()),
        AnswerEvent::Text("lo".into()),
    ];
    events.extend(call(0, "call_9", "shell", r#"{"cmd":"ls"}"#));
    events.push(AnswerEvent::Usage(TokenUsage {
        input: 10,
        output: 5,
        reasoning: Some(2),
    }));
    events.push(AnswerEvent::Finish(Finish::ToolCalls));
    let evs = stream(head(true, true, &json!([])), events, Finish::ToolCalls);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let reasoning = &evs[7].1["item"];
    assert_eq!(
        reasoning["summary"],
        json!([{"type": "summary_text", "text": "think"}])
    );
    let sealed = reasoning["encrypted_content"].as_str().unwrap();
    assert_eq!(
        crate::responses::reasoning::open(sealed).as_deref(),
        Some("think")
    );
    assert_eq!(evs[8].1["item"]["content"], json!([]));
    assert_eq!(evs[8].1["item"]["status"], "in_progress");
    assert_eq!(evs[12].1["text"], "Hello");
    assert_eq!(evs[14].1["item"]["content"][0]["text"], "Hello");
    assert_eq!(evs[15].1["item"]["arguments"], "");
    assert_eq!(evs[17].1["arguments"], r#"{"cmd":"ls"}"#);
    assert_eq!(evs[17].1["name"], "shell");
    assert_eq!(evs[18].1["item"]["call_id"], "call_9");
    let done = &evs[19].1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"].as_array().unwrap().len(), 3);
    assert_eq!(
        done["usage"],
        json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0},
               "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2},
               "total_tokens": 15})
    );
    assert_eq!(evs[0].1["response"]["output"], json!([]));
    assert_eq!(evs[0].1["response"]["status"], "in_progress");
}

#[test]
fn a_custom_and_a_namespaced_call_are_restored() {
    let tools = json!([
        {"type": "custom", "name": "apply_patch"},
        {"type": "namespace", "name": "crm", "description": "", "tools": [{"type": "function", "name": "find"}]},
    ]);
    let mut events = call(
        0,
        "call_1",
        "apply_patch",
        r#"{"input":"*** Begin Patch\n"}"#,
    );
    events.extend(call(1, "call_2", "crm.find", "{}"));
    let evs = stream(head(false, false, &tools), events, Finish::ToolCalls);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names[2..8],
        [
            "response.output_item.added",
            "response.custom_tool_call_input.delta",
            "response.custom_tool_call_input.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
        ]
    );
    let custom = &evs[5].1["item"];
    assert_eq!(custom["type"], "custom_tool_call");
    assert_eq!(custom["input"], "*** Begin Patch\n");
    assert_eq!(evs[4].1["input"], "*** Begin Patch\n");
    let f = &evs[evs.len() - 2].1["item"];
    assert_eq!(
        (f["name"].as_str(), f["namespace"].as_str()),
        (Some("find"), Some("crm"))
    );
}

#[test]
fn hidden_summary_keeps_only_the_envelope_and_sources_become_citations() {
    let mut b = Builder::new(head(false, true, &json!([])));
    b.push(AnswerEvent::Reasoning("secret".into()));
    b.push(AnswerEvent::Text("See".into()));
    b.push(AnswerEvent::Sources {
        first: 1,
        sources: vec![Source {
            url: "https://a.example/x".into(),
            title: Some("A".into()),
            hostname: None,
        }],
    });
    let r = b.into_response(Finish::Stop, Some(&CutReason::MaxTokens), 3);
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(
        v["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(v["output"][0]["summary"], json!([]));
    assert!(v["output"][0]["encrypted_content"].is_string());
    assert_eq!(
        v["output"][1]["content"][0]["annotations"],
        json!([{"type": "url_citation", "start_index": 3, "end_index": 3, "title": "A", "url": "https://a.example/x"}])
    );
    assert_eq!(v["output"][1]["status"], "incomplete");
    assert_eq!(v["usage"]["input_tokens"], 7);
    assert_eq!(v["usage"]["output_tokens"], 3);
}
