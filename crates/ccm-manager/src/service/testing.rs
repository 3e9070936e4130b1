//! Service tests' fixture: a manager state over a real SQLite store in a temporary directory,
//! users with sessions, and accounts made through the accounts service.

use std::sync::Arc;

use ccm_api::accounts::{AccessRole, AccountRequest, ApprovalPolicy};
use ccm_store::{NewSession, NewUser, Store, StoreOptions};
use uuid::Uuid;

use super::accounts;
use super::caller::{Acct, Caller, CallerAuth};
use crate::secrets::MasterKey;
use crate::{AppState, Config, ManualClock};

/// The fixture's time.
pub const NOW: i64 = 1_800_000_000;

/// A manager state on a fresh SQLite database.
pub struct Fixture {
    /// The state services run on.
    pub s: AppState,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// A fresh state.
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("ccm.db").display());
        let store = Store::connect(&url, &StoreOptions::default())
            .await
            .expect("store");
        let config = Config {
            data_dir: dir.path().join("data"),
            insecure_http: true,
            ..Config::default()
        };
        std::fs::create_dir_all(&config.data_dir).expect("data dir");
        let clock = ManualClock::new(NOW);
        let key = MasterKey::from_bytes(&[7; 32]).expect("master key");
        let s = AppState::new(store, config, Arc::new(clock), key, None).expect("state");
        Self { s, _dir: dir }
    }

    /// A new user with a session (no account selected).
    pub async fn user(&self, email: &str) -> Caller {
        let user_id = Uuid::new_v4();
        let user = NewUser {
            user_id,
            email: email.into(),
            password_hash: "$argon2id$unused".into(),
            first_name: None,
            last_name: None,
        };
        self.s.store.create_user(user, NOW).await.expect("user");
        let token = format!("ccmst1_{}", Uuid::new_v4().simple());
        let session = NewSession {
            session_id: Uuid::new_v4(),
            token_hash: super::caller::token_hash(&token),
            user_id,
            token_expires_at: NOW + 3600,
            session_expires_at: NOW + 7200,
        };
        let actor = ccm_store::Actor {
            user_id: Some(user_id),
            name: email.into(),
        };
        self.s
            .store
            .create_session(&session, &actor, NOW)
            .await
            .expect("session");
        Caller::from_token(&self.s, &token).await.expect("caller")
    }

    /// A new account (with its zone CA) created by `caller`, who becomes its MANAGER.
    pub async fn account(&self, caller: &Caller, name: &str, policy: ApprovalPolicy) -> Acct {
        let req = AccountRequest {
            name: name.into(),
            approval_policy: Some(policy),
            zone_ca_key_type: None,
            allow_simulated: None,
        };
        let rec = accounts::create(&self.s, caller, req)
            .await
            .expect("account");
        self.acting(caller, rec.acct_id).await
    }

    /// `caller` acting in `acct_id` with its session (the account selected).
    pub async fn acting(&self, caller: &Caller, acct_id: Uuid) -> Acct {
        let session = accounts::select(&self.s, caller, acct_id)
            .await
            .expect("select");
        let CallerAuth::Session { token_hash, .. } = &caller.auth else {
            panic!("a session caller");
        };
        let caller = Caller {
            auth: CallerAuth::Session {
                session,
                token_hash: token_hash.clone(),
            },
            ..caller.clone()
        };
        Acct::of(caller, &self.s).await.expect("account context")
    }

    /// A new user who is a member of `acct`'s account with `role`, acting in it.
    pub async fn member(&self, acct: &Acct, email: &str, role: AccessRole) -> Acct {
        let caller = self.user(email).await;
        self.s
            .store
            .add_member(acct.acct_id, caller.user_id, role, &acct.actor(), NOW)
            .await
            .expect("member");
        self.acting(&caller, acct.acct_id).await
    }

    /// A node enrolled in `acct`'s zone the way enrollment stores it (join token, nonce,
    /// certificate row), without a quote: the services under test start after enrollment.
    /// Returns the node id and its certificate serial.
    pub async fn node(&self, acct: &Acct, name: &str, require_approval: bool) -> (Uuid, String) {
        let zone_id = super::zones::list(&self.s, acct).await.expect("zones")[0].zone_id;
        let req = ccm_api::zones::JoinTokenRequest {
            expires_in: None,
            single_use: false,
            description: None,
        };
        let joined = super::zones::create_join_token(&self.s, acct, zone_id, req)
            .await
            .expect("join token");
        let bearer = Some(joined.token.as_str());
        let nonce = super::nodes::enrollment_nonce(&self.s, bearer)
            .await
            .expect("nonce");
        let (token, _) = super::enrollment::authenticate_token(&self.s, bearer)
            .await
            .expect("token");
        let nonce = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, nonce.nonce)
            .expect("nonce bytes");
        let node_id = Uuid::new_v4();
        let serial = hex::encode(node_id.as_bytes());
        let sgx_info = ccm_api::nodes::SgxInfo {
            version: None,
            fmspc: "00906ED50000".into(),
            tcb_status: ccm_api::apps::TcbStatus::UpToDate,
            advisory_ids: Vec::new(),
            tcb_date: String::new(),
            ppid_hash: String::new(),
            simulated: false,
            root_fingerprint: String::new(),
        };
        let policy = super::attest::NodePolicy {
            require_approval,
            ..super::attest::NodePolicy::default()
        };
        let node = ccm_store::NewNode {
            node_id,
            acct_id: acct.acct_id,
            zone_id,
            name: name.into(),
            description: None,
            ipaddress: None,
            version: None,
            sgx_info: sgx_info.clone(),
            cert_pem: "PEM".into(),
            cert_serial: serial.clone(),
            cert_not_after: NOW + 86_400,
            token_id: token.token_id,
            secret_hash: super::zones::join_secret_hash(&token.secret),
            nonce_hash: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&nonce)),
            approval: super::enrollment::node_approval(&policy, name, &sgx_info),
        };
        self.s.store.enroll_node(&node, NOW).await.expect("enroll");
        (node_id, serial)
    }

    /// Whether the node certificate with this serial is revoked.
    pub async fn node_cert_revoked(&self, serial: &str) -> bool {
        let (rec, _) = self
            .s
            .store
            .node_cert_auth(serial)
            .await
            .expect("node cert")
            .expect("a node cert");
        rec.revoked_at.is_some()
    }
}
