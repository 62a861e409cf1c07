//! HTTP clients for the load tests: an agent with a timeout, GET helpers, and [`Client`], which
//! uploads, re-uploads and deletes its own datasets and writes down in a [`Ledger`] what the node
//! answered.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    time::Duration,
};

use super::{
    workload::{expected_for, unix_now, Entry, FileSpec, Ledger, Rng, State},
    TestResult,
};

/// An agent that returns 4xx/5xx answers as answers, and gives up after a minute.
pub fn http() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build(),
    )
}

/// Status and body of a GET; the body is `None` when it could not be read in full.
pub fn get(agent: &ureq::Agent, url: &str) -> TestResult<(u16, Option<Vec<u8>>)> {
    let resp = agent.get(url).call()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().with_config().limit(u64::MAX).read_to_vec();
    Ok((status, body.ok()))
}

/// A JSON document; an error unless the answer is 200.
pub fn json(agent: &ureq::Agent, url: &str) -> TestResult<serde_json::Value> {
    let (status, body) = get(agent, url)?;
    let body = body.ok_or("unreadable body")?;
    if status != 200 {
        return Err(format!("{url}: {status} {}", String::from_utf8_lossy(&body)).into());
    }
    Ok(serde_json::from_slice(&body)?)
}

/// UTC time of day, as the node's log prints it, for histories.
pub fn clock() -> String {
    let now = unix_now();
    let secs = now as u64 % 86_400;
    let ms = ((now.fract()) * 1000.0) as u64;
    format!(
        "{:02}:{:02}:{:02}.{ms:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// One client: uploads new files, uploads its own files again, deletes them, and writes down
/// in the ledger what the node answered, until the node is gone.
pub struct Client<'a> {
    /// Which client: each owns the datasets it created, so requests on one dataset never race.
    pub id: usize,
    /// The round, for histories.
    pub round: u64,
    /// API base URL (`http://ADDR/api/codex/v1`).
    pub base: &'a str,
    pub ledger: &'a Mutex<Ledger>,
    /// Set when the round ends; the client also stops when the node stops answering.
    pub stop: &'a AtomicBool,
    pub rng: Rng,
    /// The node's `--block-ttl`, in seconds.
    pub ttl_secs: f64,
}

impl Client<'_> {
    /// Runs until `stop` is set or the node is gone.
    pub fn run(&mut self) {
        let agent = http();
        while !self.stop.load(Ordering::Relaxed) {
            let Ok(ledger) = self.ledger.lock() else {
                return;
            };
            let mine = ledger.owned_by(self.id);
            let live: Vec<&String> = mine
                .iter()
                .filter(|c| {
                    ledger
                        .entries
                        .get(*c)
                        .is_some_and(|e| e.state != State::Gone)
                })
                .collect();
            let roll = self.rng.below(100);
            let answered = if !live.is_empty() && (roll < 25 || live.len() > 12) {
                let cid = live[self.rng.below(live.len() as u64) as usize].clone();
                drop(ledger);
                self.delete(&agent, &cid)
            } else if !mine.is_empty() && roll < 40 {
                let cid = mine[self.rng.below(mine.len() as u64) as usize].clone();
                let spec = ledger.entries.get(&cid).map(|e| e.spec);
                drop(ledger);
                spec.is_some_and(|spec| self.upload(&agent, spec))
            } else {
                drop(ledger);
                let spec = FileSpec {
                    seed: self.rng.next(),
                };
                self.upload(&agent, spec)
            };
            if !answered {
                return; // the node is gone
            }
        }
    }

    /// Uploads `spec`; false when the node did not answer.
    fn upload(&mut self, agent: &ureq::Agent, spec: FileSpec) -> bool {
        let data = spec.bytes();
        let expected = expected_for(&data);
        let cid = expected.cid.clone();
        let sent = unix_now();
        let started = clock();
        if let Ok(mut ledger) = self.ledger.lock() {
            ledger.entries.entry(cid.clone()).or_insert(Entry {
                spec,
                owner: self.id,
                expected,
                state: State::Unknown,
                history: Vec::new(),
            });
        }
        let answer = agent
            .post(format!("{}/data", self.base))
            .send(&data[..])
            .map(|resp| {
                let status = resp.status().as_u16();
                (
                    status,
                    resp.into_body().read_to_string().unwrap_or_default(),
                )
            });
        let Ok(mut ledger) = self.ledger.lock() else {
            return false;
        };
        let ledger = &mut *ledger;
        let Some(entry) = ledger.entries.get_mut(&cid) else {
            return false;
        };
        let note = match &answer {
            Ok((200, body)) if *body == cid => {
                let until = match entry.state {
                    State::Stored { until } => until.max(sent + self.ttl_secs),
                    _ => sent + self.ttl_secs,
                };
                entry.state = State::Stored { until };
                ledger.uploads_acked += 1;
                "200".to_string()
            }
            Ok((status, body)) => {
                ledger.anomalies.push(format!(
                    "{cid}: upload answered {status} {body:?} (expected 200 and this CID)"
                ));
                format!("{status} {body:?}")
            }
            Err(e) => format!("no answer ({e})"),
        };
        if note != "200" && !matches!(entry.state, State::Stored { .. }) {
            // The upload may or may not have committed. (A stored dataset stays stored: an
            // upload only adds.)
            entry.state = State::Unknown;
        }
        entry.history.push(format!(
            "round {} {started}–{}: client {} upload ({} bytes) → {note}",
            self.round,
            clock(),
            self.id,
            data.len()
        ));
        answer.is_ok()
    }

    /// Deletes `cid`; false when the node did not answer.
    fn delete(&mut self, agent: &ureq::Agent, cid: &str) -> bool {
        let started = clock();
        let answer = agent
            .delete(format!("{}/data/{cid}", self.base))
            .call()
            .map(|r| r.status().as_u16());
        let Ok(mut ledger) = self.ledger.lock() else {
            return false;
        };
        let ledger = &mut *ledger;
        let Some(entry) = ledger.entries.get_mut(cid) else {
            return false;
        };
        let note = match answer {
            Ok(204) => {
                entry.state = State::Gone;
                ledger.deletes_acked += 1;
                "204".to_string()
            }
            Ok(status) => {
                entry.state = State::Unknown;
                ledger
                    .anomalies
                    .push(format!("{cid}: delete answered {status}"));
                status.to_string()
            }
            Err(ref e) => {
                entry.state = State::Unknown;
                format!("no answer ({e})")
            }
        };
        entry.history.push(format!(
            "round {} {started}–{}: client {} delete → {note}",
            self.round,
            clock(),
            self.id
        ));
        answer.is_ok()
    }
}
