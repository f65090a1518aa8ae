//! Where an answer is cut short by the client's limits: at the first stop sequence in its text
//! (held back while a stop sequence may still be forming) or where its output reaches
//! `max_tokens`, for upstreams that honour neither. Pure: the token counter is passed in.

use super::AnswerEvent;

/// Why an answer was cut.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CutReason {
    /// This stop sequence was found; the answer ends before it.
    StopSequence(String),
    MaxTokens,
}

/// Counts the tokens of a text.
pub type Counter = fn(&str) -> u64;

/// Applies stop sequences and a token budget to answer events, in order.
#[derive(Debug)]
pub struct Cut {
    stops: Vec<String>,
    /// Answer text not passed on yet: it may be the start of a stop sequence.
    held: String,
    budget: Option<(u64, Counter)>,
    used: u64,
    done: bool,
}

impl Cut {
    /// `stops`: empty ones are ignored. `budget`: the most output tokens, with their counter.
    pub fn new(stops: &[String], budget: Option<(u64, Counter)>) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
            budget,
            used: 0,
            done: false,
        }
    }

    /// True when nothing would ever be cut (the events can pass untouched).
    pub fn is_noop(&self) -> bool {
        self.stops.is_empty() && self.budget.is_none()
    }

    /// Output tokens counted so far (0 without a budget).
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Passes `ev` on into `out`, or what of it is within the limits. Returns the reason once
    /// the answer is cut; after that, nothing more is passed on (the caller ends the answer).
    pub fn push(&mut self, ev: AnswerEvent, out: &mut Vec<AnswerEvent>) -> Option<CutReason> {
        if self.done {
            return None;
        }
        let reason = match ev {
            AnswerEvent::Text(t) => self.text(&t, out),
            AnswerEvent::Reasoning(t) => self
                .flush(out)
                .or_else(|| self.spend(t, out, AnswerEvent::Reasoning)),
            AnswerEvent::ToolCallArguments { index, delta } => self.flush(out).or_else(|| {
                self.spend(delta, out, |delta| AnswerEvent::ToolCallArguments {
                    index,
                    delta,
                })
            }),
            AnswerEvent::Usage(_) => {
                out.push(ev);
                None
            }
            other => {
                let r = self.flush(out);
                if r.is_none() {
                    out.push(other);
                }
                r
            }
        };
        self.done = reason.is_some();
        reason
    }

    /// A whole answer, cut: the events that pass (with the upstream's `Finish` unless the
    /// answer was cut), and the reason if it was.
    pub fn whole(&mut self, events: Vec<AnswerEvent>) -> (Vec<AnswerEvent>, Option<CutReason>) {
        let mut passed = Vec::with_capacity(events.len());
        for ev in events {
            if let Some(reason) = self.push(ev, &mut passed) {
                return (passed, Some(reason));
            }
        }
        (passed, None)
    }

    fn text(&mut self, t: &str, out: &mut Vec<AnswerEvent>) -> Option<CutReason> {
        if self.stops.is_empty() {
            return self.spend(t.to_owned(), out, AnswerEvent::Text);
        }
        self.held.push_str(t);
        let found = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|(at, _)| *at);
        if let Some((at, stop)) = found {
            let stop = stop.clone();
            let before = self.held[..at].to_owned();
            self.held.clear();
            return self
                .spend(before, out, AnswerEvent::Text)
                .or(Some(CutReason::StopSequence(stop)));
        }
        let keep = self.partial_stop_len();
        let ready = self.held[..self.held.len() - keep].to_owned();
        self.held.drain(..ready.len());
        self.spend(ready, out, AnswerEvent::Text)
    }

    /// The length of the longest end of `held` that begins some stop sequence.
    fn partial_stop_len(&self) -> usize {
        let held = self.held.as_str();
        self.stops
            .iter()
            .map(|s| {
                (1..s.len().min(held.len() + 1))
                    .rev()
                    .find(|&n| {
                        held.is_char_boundary(held.len() - n)
                            && s.is_char_boundary(n)
                            && held.ends_with(&s[..n])
                    })
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0)
    }

    /// Passes on the text held back (at the end, or before an event of another kind).
    fn flush(&mut self, out: &mut Vec<AnswerEvent>) -> Option<CutReason> {
        if self.held.is_empty() {
            return None;
        }
        let held = std::mem::take(&mut self.held);
        self.spend(held, out, AnswerEvent::Text)
    }

    /// Passes `text` on as `make(text)` within the token budget; past it, only the part that
    /// fits, and the answer is cut.
    fn spend(
        &mut self,
        text: String,
        out: &mut Vec<AnswerEvent>,
        make: impl FnOnce(String) -> AnswerEvent,
    ) -> Option<CutReason> {
        if text.is_empty() {
            return None;
        }
        let Some((limit, count)) = self.budget else {
            out.push(make(text));
            return None;
        };
        let n = count(&text);
        if self.used + n <= limit {
            self.used += n;
            out.push(make(text));
            return None;
        }
        // The longest start of the text that still fits, found by bisection over characters.
        let left = limit.saturating_sub(self.used);
        let ends: Vec<usize> = text.char_indices().map(|(i, _)| i).skip(1).collect();
        let (mut lo, mut hi) = (0usize, ends.len());
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if count(&text[..ends[mid - 1]]) <= left {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        if lo > 0 {
            let fit = &text[..ends[lo - 1]];
            self.used += count(fit);
            out.push(make(fit.to_owned()));
        }
        Some(CutReason::MaxTokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(out: &[AnswerEvent]) -> String {
        out.iter()
            .map(|e| match e {
                AnswerEvent::Text(t) => t.as_str(),
                _ => "|",
            })
            .collect()
    }

    /// One token per character: easy to reason about.
    fn chars(s: &str) -> u64 {
        s.chars().count() as u64
    }

    #[test]
    fn a_stop_sequence_split_across_deltas_is_found_and_not_shown() {
        let stops = ["END".to_owned()];
        let mut cut = Cut::new(&stops, None);
        let mut out = Vec::new();
        assert_eq!(cut.push(AnswerEvent::Text("abc E".into()), &mut out), None);
        assert_eq!(texts(&out), "abc ");
        assert_eq!(cut.push(AnswerEvent::Text("N".into()), &mut out), None);
        assert_eq!(
            cut.push(AnswerEvent::Text("D and more".into()), &mut out),
            Some(CutReason::StopSequence("END".into()))
        );
        assert_eq!(texts(&out), "abc ");
        assert_eq!(
            cut.push(AnswerEvent::Text("ignored".into()), &mut out),
            None
        );
        assert_eq!(texts(&out), "abc ");
    }

    #[test]
    fn a_false_start_is_released_and_the_earliest_stop_wins() {
        let stops = ["xyz".to_owned(), "b".to_owned()];
        let mut cut = Cut::new(&stops, None);
        let mut out = Vec::new();
        assert_eq!(cut.push(AnswerEvent::Text("ax".into()), &mut out), None);
        assert_eq!(texts(&out), "a");
        assert_eq!(cut.push(AnswerEvent::Text("y!".into()), &mut out), None);
        assert_eq!(texts(&out), "axy!");
        assert_eq!(
            cut.push(AnswerEvent::Text("..b..xyz".into()), &mut out),
            Some(CutReason::StopSequence("b".into()))
        );
        assert_eq!(texts(&out), "axy!..");
    }

    #[test]
    fn held_text_goes_out_before_the_finish() {
        let stops = ["ü!".to_owned()];
        let mut cut = Cut::new(&stops, None);
        let mut out = Vec::new();
        cut.push(AnswerEvent::Text("hü".into()), &mut out);
        cut.push(AnswerEvent::Finish(super::super::Finish::Stop), &mut out);
        assert_eq!(texts(&out), "hü|");
    }

    #[test]
    fn a_whole_answer_keeps_its_finish_unless_cut() {
        let stops = ["!".to_owned()];
        let answer = |t: &str| {
            vec![
                AnswerEvent::Text(t.into()),
                AnswerEvent::Finish(super::super::Finish::Stop),
            ]
        };
        let (passed, reason) = Cut::new(&stops, None).whole(answer("hi"));
        assert_eq!((passed, reason), (answer("hi"), None));
        let (passed, reason) = Cut::new(&stops, None).whole(answer("hi! there"));
        assert_eq!(passed, [AnswerEvent::Text("hi".into())]);
        assert_eq!(reason, Some(CutReason::StopSequence("!".into())));
    }

    #[test]
    fn the_budget_cuts_inside_a_delta_and_counts_reasoning() {
        let mut cut = Cut::new(&[], Some((5, chars)));
        let mut out = Vec::new();
        assert_eq!(
            cut.push(AnswerEvent::Reasoning("ab".into()), &mut out),
            None
        );
        assert_eq!(
            cut.push(AnswerEvent::Text("cdefg".into()), &mut out),
            Some(CutReason::MaxTokens)
        );
        assert_eq!(out[1], AnswerEvent::Text("cde".into()));
        assert_eq!(cut.used(), 5);
        assert!(Cut::new(&[String::new()], None).is_noop());
    }
}
