use super::*;

fn head() -> Head {
    Head {
        id: "msg_1".into(),
        model: "claude-x".into(),
        input_estimate: 7,
        sources: SearchInfoMode::Table,
    }
}

fn names(out: &[Sse]) -> Vec<&'static str> {
    out.iter().map(|(n, _)| *n).collect()
}

#[test]
fn thinking_text_and_a_tool_call_stream_in_anthropic_order() {
    let mut enc = StreamEncoder::new(head());
    let mut out = Vec::new();
    for ev in [
        AnswerEvent::Reasoning("hm".into()),
        AnswerEvent::Reasoning("m".into()),
        AnswerEvent::Text("I'll read it.".into()),
        AnswerEvent::ToolCallStart {
            index: 0,
            id: "call_abc".into(),
            name: "Read".into(),
        },
        AnswerEvent::ToolCallArguments {
            index: 0,
            delta: r#"{"file_path":"#.into(),
        },
        AnswerEvent::ToolCallArguments {
            index: 0,
            delta: r#""/a"}"#.into(),
        },
        AnswerEvent::ToolCallEnd { index: 0 },
        AnswerEvent::Usage(TokenUsage {
            input: 100,
            output: 20,
            reasoning: None,
        }),
    ] {
        enc.event(ev, &mut out);
    }
    enc.finish(Finish::ToolCalls, None, 0, &mut out);
    assert_eq!(
        names(&out),
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let digest = sha2::Sha256::digest(b"hmm");
    let data: Vec<&str> = out.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(
        data[0],
        r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":7,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}}"#
    );
    assert_eq!(
        data[1],
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#
    );
    assert_eq!(
        data[2],
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hm"}}"#
    );
    assert_eq!(
        data[4],
        format!(
            r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"signature_delta","signature":"qwen2api.{}"}}}}"#,
            hex::encode(digest)
        )
    );
    assert_eq!(
        data[9],
        r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_abc","name":"Read","input":{}}}"#
    );
    assert_eq!(
        data[10],
        r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"file_path\":"}}"#
    );
    assert_eq!(
        data[13],
        r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":100,"output_tokens":20,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}"#
    );
    assert_eq!(data[14], r#"{"type":"message_stop"}"#);
}

#[test]
fn the_aggregate_builds_the_same_blocks() {
    let mut agg = Aggregate::new(SearchInfoMode::Table);
    for ev in [
        AnswerEvent::Reasoning("hmm".into()),
        AnswerEvent::Text("a".into()),
        AnswerEvent::Text("b".into()),
        AnswerEvent::ToolCallStart {
            index: 0,
            id: "call_1".into(),
            name: "Bash".into(),
        },
        AnswerEvent::ToolCallArguments {
            index: 0,
            delta: r#"{"command":"ls"}"#.into(),
        },
        AnswerEvent::ToolCallEnd { index: 0 },
        AnswerEvent::ToolCallStart {
            index: 1,
            id: "call_2".into(),
            name: "Bash".into(),
        },
        AnswerEvent::ToolCallArguments {
            index: 1,
            delta: r#"{"command":"#.into(),
        },
    ] {
        agg.push(ev);
    }
    let h = head();
    let cut = CutReason::MaxTokens;
    let m = agg.into_message(&h, Finish::Stop, Some(&cut), 9);
    assert_eq!(
        m.content,
        [
            BlockOut::Thinking {
                thinking: "hmm".into(),
                signature: signature(&sha2::Sha256::digest(b"hmm")),
            },
            BlockOut::Text { text: "ab".into() },
            BlockOut::ToolUse {
                id: "toolu_1".into(),
                name: "Bash".into(),
                input: serde_json::json!({"command": "ls"}),
            },
            BlockOut::ToolUse {
                id: "toolu_2".into(),
                name: "Bash".into(),
                input: serde_json::json!({}),
            },
        ]
    );
    assert_eq!(m.stop_reason, Some(StopReason::MaxTokens));
    assert_eq!(m.usage.input_tokens, 7);
    assert_eq!(m.usage.output_tokens, 9);
}

#[test]
fn stop_reasons() {
    assert_eq!(stop_reason(Finish::Stop, None), (StopReason::EndTurn, None));
    assert_eq!(
        stop_reason(Finish::Length, None),
        (StopReason::MaxTokens, None)
    );
    assert_eq!(
        stop_reason(Finish::Stop, Some(&CutReason::StopSequence("##".into()))),
        (StopReason::StopSequence, Some("##".into()))
    );
    assert_eq!(
        stop_reason(Finish::ContentFilter, None).0,
        StopReason::Refusal
    );
}
