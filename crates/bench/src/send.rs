//! Sending: one start event a request, or a batch of them, each timed
//! from sent to acknowledged.

use std::time::Instant;

use anyhow::bail;

use serde_json::{json, Value};

use crate::driver::{Bench, Sent};

impl Bench {
    pub(crate) fn start_body(&self, id: &str) -> Value {
        start_body_to(id, &self.callee)
    }

    pub(crate) fn note_error(&self, e: String) {
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(e);
    }

    pub(crate) fn take_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// `POST /api/v1/calls` with one start event.
    pub(crate) async fn send_one(&self, id: String) -> Sent {
        let body = self.start_body(&id).to_string();
        let sent = Instant::now();
        let res = self
            .http
            .post(format!("{}/api/v1/calls", self.server))
            .header("authorization", &self.ingest_auth)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let acked = match res {
            Ok(r) if r.status().is_success() => {
                // Read the answer: the acknowledgement is the whole response.
                match r.bytes().await {
                    Ok(_) => Some(Instant::now()),
                    Err(e) => {
                        self.note_error(format!("reading the answer: {e}"));
                        None
                    }
                }
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                self.note_error(format!("{status}: {text}"));
                None
            }
            Err(e) => {
                self.note_error(format!("{e:#}"));
                None
            }
        };
        Sent { id, sent, acked }
    }

    /// `POST /api/v1/calls/batch` with these start events; an error when the
    /// server has no such endpoint (404), so the run stops there.
    pub(crate) async fn send_batch(&self, ids: Vec<String>) -> anyhow::Result<Vec<Sent>> {
        self.send_batch_to(ids, &self.callee).await
    }

    /// A batch of start events to `callee` (the number of another scenario).
    pub(crate) async fn send_batch_to(
        &self,
        ids: Vec<String>,
        callee: &str,
    ) -> anyhow::Result<Vec<Sent>> {
        let calls: Vec<Value> = ids.iter().map(|id| start_body_to(id, callee)).collect();
        let body = json!({ "calls": calls }).to_string();
        let sent = Instant::now();
        let res = self
            .http
            .post(format!("{}/api/v1/calls/batch", self.server))
            .header("authorization", &self.ingest_auth)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let failed_all = |e: String| -> Vec<Sent> {
            self.note_error(e);
            ids.iter()
                .map(|id| Sent {
                    id: id.clone(),
                    sent,
                    acked: None,
                })
                .collect()
        };
        let r = match res {
            Ok(r) => r,
            Err(e) => return Ok(failed_all(format!("{e:#}"))),
        };
        let status = r.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            bail!(
                "this server has no batch ingest endpoint (POST /api/v1/calls/batch answered 404); \
                 run without --batch, or against a build that has it"
            );
        }
        let text = match r.text().await {
            Ok(t) => t,
            Err(e) => return Ok(failed_all(format!("reading the batch answer: {e}"))),
        };
        let acked_at = Instant::now();
        if !status.is_success() {
            return Ok(failed_all(format!("batch: {status}: {text}")));
        }
        let items = item_failures(&text, ids.len());
        Ok(ids
            .into_iter()
            .zip(items)
            .map(|(id, failure)| {
                let acked = match failure {
                    None => Some(acked_at),
                    Some(why) => {
                        self.note_error(format!("batch item {id}: {why}"));
                        None
                    }
                };
                Sent { id, sent, acked }
            })
            .collect())
    }
}

/// A start event of call `id` to `callee`.
pub(crate) fn start_body_to(id: &str, callee: &str) -> Value {
    json!({"id": id, "caller": "79990000000", "callee": callee})
}

/// Per item of a batch answer, why it failed (`None`: stored). The answer is
/// read leniently: an array under `results`, `items` or `calls` (or the answer
/// itself), whose items failed when they carry an `error` or a `status` ≥ 300.
/// Without such an array the HTTP status stands for every item.
pub(crate) fn item_failures(answer: &str, n: usize) -> Vec<Option<String>> {
    let parsed: Value = serde_json::from_str(answer).unwrap_or(Value::Null);
    let items = ["results", "items", "calls"]
        .iter()
        .find_map(|k| parsed.get(k).and_then(Value::as_array))
        .or_else(|| parsed.as_array());
    let Some(items) = items else {
        return vec![None; n];
    };
    (0..n)
        .map(|i| match items.get(i) {
            None => Some("missing from the batch answer".to_owned()),
            Some(item) => {
                let status = item.get("status").and_then(Value::as_u64);
                match item.get("error") {
                    Some(e) if !e.is_null() => Some(e.to_string()),
                    _ if status.is_some_and(|s| s >= 300) => Some(item.to_string()),
                    _ => None,
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_items_fail_on_an_error_or_a_failing_status() {
        let answer = r#"{"results": [{"status": 202}, {"error": {"code": "unknown_number"}}, {"status": 409}, {"status": 200, "error": null}]}"#;
        let f = item_failures(answer, 5);
        assert_eq!(f[0], None);
        assert!(f[1].is_some() && f[2].is_some());
        assert_eq!(f[3], None);
        assert_eq!(f[4].as_deref(), Some("missing from the batch answer"));
    }

    #[test]
    fn batch_answer_without_items_stands_for_every_call() {
        assert_eq!(item_failures(r#"{"stored": 3}"#, 3), vec![None, None, None]);
    }
}
