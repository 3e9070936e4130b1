//! Who is calling: Argon2id passwords, bearer tokens (sessions and API keys), the caller
//! ([`Caller`]) and the caller acting in an account ([`Acct`]) with its role checks.
//!
//! Tokens are 32 random bytes (base64url) behind a prefix (`ccmst1_` for sessions, `ccmak1_` for
//! API keys). Only their SHA-256 is stored, so a database leak reveals no usable token; being
//! high-entropy, they need no slow hash. Sessions live in the database: they survive a restart,
//! work on every replica sharing it, and end at once when terminated. Expiry is checked against
//! the state's clock on every request. The HTTP extractors that build these from a request are
//! the HTTP edge's (an adapter).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ccm_api::accounts::AccessRole;
use ccm_api::auth::{API_KEY_PREFIX, ApiKey, SESSION_TOKEN_PREFIX};
use ccm_store::{Actor, SessionRecord};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{ServiceError, ServiceResult};
use crate::{AppState, Error};

/// The Argon2id cost for new hashes: OWASP's 7 MiB, 5 passes, 1 lane setting, which that
/// guidance rates equal to 19 MiB / 2 passes while needing less memory per login. Existing
/// hashes verify with the parameters recorded in them.
fn argon2() -> Argon2<'static> {
    match argon2::Params::new(7 * 1024, 5, 1, None) {
        Ok(p) => Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p),
        Err(_) => Argon2::default(),
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Password hashing and verification on one long-lived thread behind a bounded queue.
///
/// Argon2 allocates its whole memory cost per hash; doing every hash on the same thread keeps
/// that memory in one allocator arena that is reused, instead of one retained arena per
/// blocking thread (which pushed an idle manager's RSS up by the memory cost for every thread
/// that ever hashed). The queue is bounded: when `capacity` jobs wait, a new one is refused at
/// once ([`ServiceError::Busy`], 503 with `Retry-After`) instead of queueing without end. Callers
/// await the answer on a oneshot channel, so no async worker and no blocking-pool thread waits
/// for a hash (conversions and CA loading keep the blocking pool).
///
/// One client address may hold at most a quarter of the queue (at least one job) at a time;
/// its further requests are refused with [`ServiceError::RateLimited`] (429), so a flood from
/// one address cannot fill the queue and turn away other people's logins.
#[derive(Debug)]
pub struct PasswordWorker {
    tx: Option<std::sync::mpsc::SyncSender<Job>>,
    per_client: usize,
    in_flight: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// A client address's place in the queue, given back when its job has run or was dropped.
struct Share {
    client: IpAddr,
    in_flight: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.client);
            }
        }
    }
}

impl PasswordWorker {
    /// Starts the thread with room for `capacity` waiting jobs. The thread ends when the worker
    /// is dropped.
    pub fn start(capacity: usize) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(capacity.max(1));
        let started = std::thread::Builder::new()
            .name("ccm-password".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .is_ok();
        Self {
            tx: started.then_some(tx),
            per_client: (capacity / 4).max(1),
            in_flight: Arc::default(),
        }
    }

    /// Takes one of the client's places in the queue, or refuses when it holds its share.
    fn take_share(&self, client: Option<IpAddr>) -> ServiceResult<Option<Share>> {
        let Some(client) = client else {
            return Ok(None);
        };
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(client).or_insert(0);
        if *n >= self.per_client {
            tracing::debug!(%client, "password job refused: the address holds its queue share");
            return Err(ServiceError::RateLimited {
                retry_after_secs: 1,
            });
        }
        *n += 1;
        Ok(Some(Share {
            client,
            in_flight: Arc::clone(&self.in_flight),
        }))
    }

    async fn run<T: Send + 'static>(
        &self,
        client: Option<IpAddr>,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> ServiceResult<T> {
        let share = self.take_share(client)?;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done_tx.send(f());
            drop(share);
        });
        match &self.tx {
            Some(tx) => match tx.try_send(job) {
                Ok(()) => {}
                Err(std::sync::mpsc::TrySendError::Full(_)) => {
                    return Err(ServiceError::Busy {
                        retry_after_secs: 1,
                    });
                }
                Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                    return Err(ServiceError::internal("the password thread stopped"));
                }
            },
            // No thread could be started: do the work on the blocking pool rather than fail.
            None => {
                tokio::task::spawn_blocking(job)
                    .await
                    .map_err(ServiceError::internal)?;
            }
        }
        done_rx
            .await
            .map_err(|_| ServiceError::internal("the password thread dropped a job"))
    }

    /// Hashes a password with Argon2id (m = 7 MiB, t = 5, p = 1).
    pub async fn hash(&self, password: &str) -> ServiceResult<String> {
        self.hash_from(None, password).await
    }

    /// [`Self::hash`] for a request from `client`, within that address's share of the queue.
    pub async fn hash_from(&self, client: Option<IpAddr>, password: &str) -> ServiceResult<String> {
        let salt = new_salt().map_err(ServiceError::from)?;
        let password = zeroize::Zeroizing::new(password.to_string());
        self.run(client, move || {
            argon2()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| ServiceError::internal(format!("password hashing: {e}")))
        })
        .await?
    }

    /// Checks a password against a PHC hash (with the parameters recorded in it); a malformed
    /// hash verifies nothing.
    pub async fn verify(&self, password: &str, hash: &str) -> ServiceResult<bool> {
        self.verify_from(None, password, hash).await
    }

    /// [`Self::verify`] for a request from `client`, within that address's share of the queue.
    pub async fn verify_from(
        &self,
        client: Option<IpAddr>,
        password: &str,
        hash: &str,
    ) -> ServiceResult<bool> {
        let password = zeroize::Zeroizing::new(password.to_string());
        let hash = hash.to_string();
        self.run(client, move || {
            PasswordHash::new(&hash)
                .is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
        })
        .await
    }
}

fn new_salt() -> Result<SaltString, Error> {
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| Error::Crypto("no randomness"))?;
    SaltString::encode_b64(&salt).map_err(|e| Error::PasswordHash(e.to_string()))
}

/// Hashes a password with Argon2id (m = 7 MiB, t = 5, p = 1) on the calling thread. Blocks;
/// request handlers use [`PasswordWorker`].
pub fn hash_password(password: &str) -> Result<String, Error> {
    let salt = new_salt()?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::PasswordHash(e.to_string()))
}

/// A new random token with `prefix`.
pub fn new_token(prefix: &str) -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Crypto("no randomness"))?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// Hex SHA-256 of a token, as stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// How the caller authenticated.
#[derive(Debug, Clone)]
pub enum CallerAuth {
    /// A session bearer token.
    Session {
        /// The session.
        session: SessionRecord,
        /// SHA-256 of the presented token.
        token_hash: String,
    },
    /// An API key.
    ApiKey(ApiKey),
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user.
    pub user_id: Uuid,
    /// The user's e-mail.
    pub email: String,
    /// Whether the user administers the manager.
    pub is_sysadmin: bool,
    /// How they authenticated.
    pub auth: CallerAuth,
}

impl Caller {
    /// The caller as recorded in the audit log.
    pub fn actor(&self) -> Actor {
        match &self.auth {
            CallerAuth::Session { .. } => Actor {
                user_id: Some(self.user_id),
                name: self.email.clone(),
            },
            CallerAuth::ApiKey(k) => Actor {
                user_id: Some(self.user_id),
                name: format!("apikey:{}", k.name),
            },
        }
    }

    /// Whether the caller administers the manager: a system administrator signed in with a
    /// session (an API key never does, whoever made it).
    pub fn administers(&self) -> bool {
        self.is_sysadmin && matches!(self.auth, CallerAuth::Session { .. })
    }

    /// The one account an API key caller may reach; `None` for a session (all its accounts).
    pub fn key_account(&self) -> Option<Uuid> {
        match &self.auth {
            CallerAuth::ApiKey(k) => Some(k.acct_id),
            CallerAuth::Session { .. } => None,
        }
    }

    /// The session, or 403 for API keys (which have none).
    pub fn session(&self) -> ServiceResult<(&SessionRecord, &str)> {
        match &self.auth {
            CallerAuth::Session {
                session,
                token_hash,
            } => Ok((session, token_hash)),
            CallerAuth::ApiKey(_) => Err(ServiceError::Forbidden(
                "API keys have no session; log in with a user".into(),
            )),
        }
    }
}

impl Caller {
    /// Resolves a session token or API key (from an `Authorization: Bearer` header or the
    /// console's session cookie): 401 unless it exists and has not expired by the state's clock.
    pub async fn from_token(state: &AppState, token: &str) -> ServiceResult<Self> {
        let now = state.clock.now();
        let hash = token_hash(token);
        let invalid = || ServiceError::Unauthenticated {
            code: "invalid_token",
            message: "the token is not valid".into(),
        };
        let (user_id, auth) = if token.starts_with(SESSION_TOKEN_PREFIX) {
            let session = state
                .store
                .session_by_token_hash(&hash)
                .await?
                .ok_or_else(invalid)?;
            if session.token_expires_at <= now || session.session_expires_at <= now {
                return Err(ServiceError::Unauthenticated {
                    code: "token_expired",
                    message: "the token has expired; log in again".into(),
                });
            }
            (
                session.user_id,
                CallerAuth::Session {
                    session,
                    token_hash: hash,
                },
            )
        } else if token.starts_with(API_KEY_PREFIX) {
            let key = state
                .store
                .api_key_by_hash(&hash)
                .await?
                .ok_or_else(invalid)?
                .key;
            if key.expires_at.is_some_and(|e| e <= now) {
                return Err(ServiceError::Unauthenticated {
                    code: "token_expired",
                    message: "the API key has expired".into(),
                });
            }
            (key.user_id, CallerAuth::ApiKey(key))
        } else {
            return Err(invalid());
        };
        let user = state
            .store
            .get_user(user_id)
            .await?
            .ok_or_else(invalid)?
            .user;
        Ok(Caller {
            user_id,
            email: user.user_email,
            is_sysadmin: user.is_sysadmin,
            auth,
        })
    }
}

/// The caller acting in an account: the session's selected account, or the API key's account.
#[derive(Debug, Clone)]
pub struct Acct {
    /// The account.
    pub acct_id: Uuid,
    /// The caller's effective role in it.
    pub role: AccessRole,
    /// The caller.
    pub caller: Caller,
}

/// 403 unless `role` is at least `min`.
pub fn require_role(role: AccessRole, min: AccessRole) -> ServiceResult<()> {
    if role >= min {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(format!(
            "this needs the {} role in the account; you have {}",
            min.as_str(),
            role.as_str()
        )))
    }
}

impl Acct {
    /// 403 unless the caller's role is at least `min`.
    pub fn require(&self, min: AccessRole) -> ServiceResult<()> {
        require_role(self.role, min)
    }

    /// The caller as recorded in the audit log.
    pub fn actor(&self) -> Actor {
        self.caller.actor()
    }
}

impl Acct {
    /// Resolves the account context of an authenticated caller.
    pub async fn of(caller: Caller, state: &AppState) -> ServiceResult<Self> {
        let (acct_id, cap) = match &caller.auth {
            CallerAuth::Session { session, .. } => (
                session.selected_acct_id.ok_or_else(|| {
                    ServiceError::bad_request(
                        "no_account_selected",
                        "select an account first: POST /v1/sys/session/select_account/{acct_id}",
                    )
                })?,
                AccessRole::Manager,
            ),
            CallerAuth::ApiKey(k) => (k.acct_id, k.role),
        };
        let member = state
            .store
            .role_of(caller.user_id, acct_id)
            .await?
            .ok_or_else(|| {
                ServiceError::Forbidden("you are not a member of the selected account".into())
            })?;
        Ok(Acct {
            acct_id,
            role: member.min(cap),
            caller,
        })
    }
}

/// A fixed Argon2id hash to verify against when a login names an unknown user, so the response
/// time does not reveal which e-mail addresses are registered.
pub fn dummy_hash() -> Result<String, Error> {
    hash_password("ccm-dummy-password-for-timing")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_holds_at_most_a_quarter_of_the_password_queue() {
        let worker = PasswordWorker::start(8);
        let a = Some(IpAddr::from([192, 0, 2, 1]));
        let b = Some(IpAddr::from([192, 0, 2, 2]));
        let first = worker.take_share(a).unwrap();
        let _second = worker.take_share(a).unwrap();
        assert!(matches!(
            worker.take_share(a),
            Err(ServiceError::RateLimited { .. })
        ));
        assert!(worker.take_share(b).unwrap().is_some());
        assert!(worker.take_share(None).unwrap().is_none());
        drop(first);
        assert!(
            worker.take_share(a).is_ok(),
            "a finished job gives its place back"
        );
    }
}
