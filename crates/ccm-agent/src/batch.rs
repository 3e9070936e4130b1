//! Batching of issuance requests on their way to the manager.
//!
//! Requests that arrive while earlier ones are with the manager travel together in one call
//! (`POST /v1/node-agent/certificates/batch`): one HTTP exchange, one node authentication and
//! one store commit serve them all, and each is still decided on its own. Nothing waits for a
//! batch to fill: a request that finds a free slot is sent once the runtime's other tasks had
//! one turn (no timer), alone if need be. At most
//! [`IN_FLIGHT`] calls are outstanding; what arrives meanwhile forms the next batch (at most
//! [`MAX_ISSUE_BATCH`] requests and about [`MAX_BATCH_BYTES`]).
//!
//! A manager without the batch endpoint (404 or 405, an older release) gets single requests
//! from then on; a batch it finds too large (413) is sent as single requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ccm_api::certificates::CertificateTask;
use ccm_api::nodes::{
    AttestedIssueBatch, AttestedIssueOutcome, AttestedIssueRequest, MAX_ISSUE_BATCH,
};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::manager::{CallError, ManagerClient};
use crate::state::PendingTask;

/// The manager's answer for one request: its task and, when issued, the certificate's expiry.
pub(crate) type Answer = Result<(CertificateTask, Option<i64>), CallError>;

/// Most calls to the manager outstanding at once.
pub const IN_FLIGHT: usize = 4;

/// A batch is closed once its CSRs and quotes reach this size (the manager's default body limit
/// is 1 MiB).
pub const MAX_BATCH_BYTES: usize = 512 * 1024;

struct Submission {
    pending: Arc<PendingTask>,
    done: oneshot::Sender<Answer>,
}

impl Submission {
    fn size(&self) -> usize {
        self.pending.csr.len() + self.pending.quote.len()
    }

    fn request(&self) -> AttestedIssueRequest {
        AttestedIssueRequest {
            task_id: self.pending.task_id,
            csr: self.pending.csr.clone(),
            quote: self.pending.quote.clone(),
        }
    }

    /// Hands the answer back (after letting go of the request, so the submitter owns it again).
    fn finish(self, answer: Answer) {
        drop(self.pending);
        let _ = self.done.send(answer);
    }
}

fn stopping() -> CallError {
    CallError::Unavailable("the agent is stopping".into())
}

/// The agent's side of the batching: submits requests to the dispatcher task.
#[derive(Debug, Clone)]
pub(crate) struct Batcher {
    tx: mpsc::Sender<Submission>,
}

impl Batcher {
    /// Starts the dispatcher. `client` gives the current manager client, or `None` once the
    /// agent is gone. The dispatcher ends when the last [`Batcher`] is dropped.
    pub(crate) fn start(client: impl Fn() -> Option<ManagerClient> + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_ISSUE_BATCH * IN_FLIGHT);
        tokio::spawn(dispatch(client, rx));
        Self { tx }
    }

    /// Sends a request to the manager (with whatever else is waiting) and waits for its answer.
    pub(crate) async fn submit(&self, pending: Arc<PendingTask>) -> Answer {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Submission { pending, done })
            .await
            .map_err(|_| stopping())?;
        wait.await.unwrap_or_else(|_| Err(stopping()))
    }
}

async fn dispatch(client: impl Fn() -> Option<ManagerClient>, mut rx: mpsc::Receiver<Submission>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let singles_only = Arc::new(AtomicBool::new(false));
    while let Some(first) = rx.recv().await {
        // Wait for a free slot first: requests arriving meanwhile join this batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        // Requests whose bodies are being read right now join this batch: the runtime's other
        // tasks get one turn first (no timer: with nothing else to run, it returns at once).
        // Bigger batches cost less per request (BENCHMARKS.md, attested certificate issuance).
        tokio::task::yield_now().await;
        let mut bytes = first.size();
        let mut batch = vec![first];
        while batch.len() < MAX_ISSUE_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(s) => {
                    bytes += s.size();
                    batch.push(s);
                }
                Err(_) => break,
            }
        }
        let Some(client) = client() else {
            for s in batch {
                s.finish(Err(stopping()));
            }
            continue;
        };
        let singles_only = singles_only.clone();
        tokio::spawn(async move {
            send(&client, batch, &singles_only).await;
            drop(slot);
        });
    }
}

fn answer(o: AttestedIssueOutcome) -> Answer {
    match (o.task, o.error) {
        (Some(task), _) => Ok((task, o.not_after)),
        // The single-request endpoint's 409: the request conflicts with the manager's state.
        (None, Some(e)) => Err(CallError::Refused {
            status: 409,
            code: e.code,
            message: e.message,
        }),
        (None, None) => Err(CallError::Unavailable(
            "the manager's answer names neither a task nor an error".into(),
        )),
    }
}

async fn send(client: &ManagerClient, batch: Vec<Submission>, singles_only: &AtomicBool) {
    if !singles_only.load(Ordering::Relaxed) {
        let req = AttestedIssueBatch {
            requests: batch.iter().map(Submission::request).collect(),
        };
        match client.issue_batch(&req).await {
            Ok(resp) if resp.results.len() == batch.len() => {
                for (s, o) in batch.into_iter().zip(resp.results) {
                    s.finish(answer(o));
                }
                return;
            }
            Ok(resp) => {
                let m = format!(
                    "the manager answered {} outcomes for {} requests",
                    resp.results.len(),
                    batch.len()
                );
                for s in batch {
                    s.finish(Err(CallError::Unavailable(m.clone())));
                }
                return;
            }
            Err(CallError::Refused {
                status: 404 | 405, ..
            }) => {
                singles_only.store(true, Ordering::Relaxed);
                tracing::info!(
                    "the manager has no batch issuance endpoint; sending requests one by one"
                );
            }
            Err(CallError::Refused { status: 413, .. }) => {}
            Err(e) => {
                for s in batch {
                    s.finish(Err(e.clone()));
                }
                return;
            }
        }
    }
    let singles: Vec<_> = batch
        .into_iter()
        .map(|s| {
            let client = client.clone();
            tokio::spawn(async move {
                let answer = client.issue(&s.request()).await.map(|task| (task, None));
                s.finish(answer);
            })
        })
        .collect();
    for single in singles {
        let _ = single.await;
    }
}
