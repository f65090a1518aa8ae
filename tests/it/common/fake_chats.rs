//! The fake's upstream chats as the site keeps them: each chat's messages (the user message a
//! completion sent, the answer it got), the `parent_id` of a completion checked against them
//! (an unknown parent, another account's chat or a deleted chat is answered `Not_Found`, as the
//! site does: docs/upstream.md §5.5), and which chats were deleted.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::fake_qwen::{Recorded, Reply};
use super::qwen_sse;

/// One message of a fake chat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    /// The message's `fid` (user) or the answer's `response_id` (assistant).
    pub id: String,
    pub role: &'static str,
    /// The `parent_id` the completion named (user), or the user message (assistant).
    pub parent_id: Option<String>,
    /// The text sent (user); empty for answers.
    pub content: String,
}

#[derive(Default)]
pub(super) struct Chats {
    by_id: HashMap<String, Chat>,
    deleted: Vec<String>,
    /// Give each answer a fresh `response_id` instead of the fixtures' one.
    numbered: bool,
    answers: usize,
}

struct Chat {
    label: String,
    messages: Vec<ChatMessage>,
}

/// What the site answers for a chat or parent it does not have.
fn not_found() -> Reply {
    Reply::json(
        200,
        json!({
            "success": false,
            "request_id": uuid::Uuid::new_v4().to_string(),
            "data": {"code": "Not_Found", "details": "The chat is not exist"},
        }),
    )
}

/// The `parent_id` a completion names: top level, else on its message.
pub fn parent_of(body: &Value) -> Option<String> {
    let message = &body["messages"][0];
    [
        &body["parent_id"],
        &message["parentId"],
        &message["parent_id"],
    ]
    .into_iter()
    .find_map(|v| v.as_str().map(str::to_owned))
}

/// The text a completion sent: its message's `content`, or the text item of a content array.
pub fn prompt_of(body: &Value) -> String {
    let content = &body["messages"][0]["content"];
    match content {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .find_map(|i| i["text"].as_str())
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

impl Chats {
    pub(super) fn number_answers(&mut self) {
        self.numbered = true;
    }

    pub(super) fn created(&mut self, id: &str, label: &str) {
        self.by_id.insert(
            id.to_owned(),
            Chat {
                label: label.to_owned(),
                messages: Vec::new(),
            },
        );
    }

    pub(super) fn delete(&mut self, id: &str) {
        self.by_id.remove(id);
        self.deleted.push(id.to_owned());
    }

    pub(super) fn deleted(&self) -> Vec<String> {
        self.deleted.clone()
    }

    pub(super) fn messages(&self, id: &str) -> Option<Vec<ChatMessage>> {
        self.by_id.get(id).map(|c| c.messages.clone())
    }

    /// The site's refusal of a completion into `chat_id` by `label`, if it would refuse.
    pub(super) fn refusal(&self, chat_id: &str, label: &str, body: &Value) -> Option<Reply> {
        let parent = parent_of(body);
        if self.deleted.iter().any(|d| d == chat_id) {
            return Some(not_found());
        }
        let parent = parent?;
        let Some(chat) = self.by_id.get(chat_id).filter(|c| c.label == label) else {
            return Some(not_found());
        };
        if !chat
            .messages
            .iter()
            .any(|m| m.role == "assistant" && m.id == parent)
        {
            return Some(not_found());
        }
        None
    }

    /// Records a completion answered with `reply` (numbering its answer id when asked) and
    /// returns the reply to play.
    pub(super) fn answered(&mut self, request: &Recorded, label: &str, reply: Reply) -> Reply {
        let Some(body) = request.json.as_ref() else {
            return reply;
        };
        let Some(chat_id) = request.query_param("chat_id") else {
            return reply;
        };
        let reply = if self.numbered {
            self.answers += 1;
            renumber(reply, &format!("answer-{}", self.answers))
        } else {
            reply
        };
        let Some(answer_id) = answer_id(&reply) else {
            return reply;
        };
        let chat = self.by_id.entry(chat_id.to_owned()).or_insert(Chat {
            label: label.to_owned(),
            messages: Vec::new(),
        });
        let user_id = body["messages"][0]["fid"]
            .as_str()
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
        chat.messages.push(ChatMessage {
            id: user_id.clone(),
            role: "user",
            parent_id: parent_of(body),
            content: prompt_of(body),
        });
        chat.messages.push(ChatMessage {
            id: answer_id,
            role: "assistant",
            parent_id: Some(user_id),
            content: String::new(),
        });
        reply
    }
}

/// The reply with the fixtures' response id replaced by `id`.
fn renumber(reply: Reply, id: &str) -> Reply {
    match reply {
        Reply::Sse {
            body,
            split,
            first_delay,
            delay,
            end,
        } => {
            let text = String::from_utf8_lossy(&body).replace(qwen_sse::RID, id);
            Reply::Sse {
                body: text.into_bytes(),
                split,
                first_delay,
                delay,
                end,
            }
        }
        Reply::Delayed(d, inner) => Reply::Delayed(d, Box::new(renumber(*inner, id))),
        other => other,
    }
}

/// The id of the answer an SSE reply gives: its first `response.created` of index "0".
fn answer_id(reply: &Reply) -> Option<String> {
    let body = match reply {
        Reply::Sse { body, .. } => body,
        Reply::Delayed(_, inner) => return answer_id(inner),
        _ => return None,
    };
    String::from_utf8_lossy(body)
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find_map(|v| {
            let created = v.get("response.created")?;
            let index = created["response_index"].as_str().unwrap_or("0");
            (index == "0").then(|| created["response_id"].as_str().map(str::to_owned))?
        })
}
