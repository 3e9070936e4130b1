//! What the store's test files share: the database a test runs on (a new SQLite file or a new
//! database of the PostgreSQL test cluster), a store with an administrator and an account, and
//! [`both!`], which runs a test function once on each database.
// Each test file uses part of this module.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use ccm_api::accounts::{ApprovalPolicy, ZoneCaKeyType};
use ccm_api::apps::{AdvancedSettings, App};
use ccm_api::builds::{Build, BuildStatus, BuildStatusType, DockerInfo, EnclaveInfo};
use ccm_api::certificates::CertificateStatusType;
use ccm_api::tasks::{ApprovalStatus, TaskStatusType};
use ccm_store::{
    Actor, Effect, EffectStep, IssuanceRecord, NewAccount, NewUser, NewZone, Store, StoreOptions,
    TaskDecision,
};
use uuid::Uuid;

/// The database of one test; dropping it removes it.
pub enum Db {
    /// A directory holding `ccm.db`.
    Sqlite(tempfile::TempDir),
    /// A database of the shared PostgreSQL test cluster.
    Pg(ccm_testkit::postgres::TestDatabase),
}

impl Db {
    /// The store URL of the database.
    pub fn url(&self) -> String {
        match self {
            Db::Sqlite(d) => format!("sqlite://{}", d.path().join("ccm.db").display()),
            Db::Pg(p) => p.url.clone(),
        }
    }
}

/// A new SQLite file.
pub fn sqlite() -> Db {
    Db::Sqlite(tempfile::tempdir().unwrap())
}

/// A new PostgreSQL database.
pub fn pg() -> Db {
    Db::Pg(ccm_testkit::postgres::database().expect("PostgreSQL test cluster"))
}

/// The tests' clock.
pub const NOW: i64 = 1_800_000_000;

/// A store on `db` with the migrations applied.
pub async fn connect(db: &Db) -> Store {
    Store::connect(&db.url(), &StoreOptions::default())
        .await
        .unwrap()
}

/// A store on `db` whose first user (alice, the system administrator, the acting user) created
/// an account with `policy`; answers the store, alice and the account.
pub async fn setup(db: &Db, policy: ApprovalPolicy) -> (Store, Actor, Uuid) {
    let store = connect(db).await;
    let user_id = Uuid::new_v4();
    // The first user signs up with the setup token and administers the manager.
    store.init_setup_token("setup-hash").await.unwrap();
    store
        .create_admin_with_setup_token(
            NewUser {
                user_id,
                email: "Alice@Example.com".into(),
                password_hash: "$argon2id$x".into(),
                first_name: None,
                last_name: None,
            },
            "setup-hash",
            NOW,
        )
        .await
        .unwrap()
        .expect("the setup token is valid");
    let actor = Actor {
        user_id: Some(user_id),
        name: "alice@example.com".into(),
    };
    let acct_id = create_account(&store, &actor, policy).await;
    (store, actor, acct_id)
}

/// The account "acme" with `policy`, created by `actor` (a user of the store); answers its id.
pub async fn create_account(store: &Store, actor: &Actor, policy: ApprovalPolicy) -> Uuid {
    let creator = actor.user_id.expect("the creator is a user");
    let acct = store
        .create_account(
            &NewAccount {
                acct_id: Uuid::new_v4(),
                name: "acme".into(),
                approval_policy: policy,
                allow_simulated: false,
                creator,
                zone: NewZone {
                    zone_id: Uuid::new_v4(),
                    name: "acme zone".into(),
                    ca_cert_pem: "PEM".into(),
                    ca_key_sealed: vec![1, 2, 3],
                    ca_key_type: ZoneCaKeyType::EcP256,
                },
            },
            actor,
            NOW,
        )
        .await
        .unwrap();
    acct.acct_id
}

/// A refused certificate request of account `acct_id` in `zone_id`, new task id.
pub fn denied(acct_id: Uuid, zone_id: Uuid) -> IssuanceRecord {
    IssuanceRecord {
        certificate_id: Uuid::now_v7(),
        task_id: Uuid::now_v7(),
        acct_id,
        zone_id,
        node_id: Uuid::new_v4(),
        node_name: "node-1".into(),
        app_id: None,
        build_id: None,
        status: CertificateStatusType::Rejected,
        csr: "CSR".into(),
        quote: vec![3, 0],
        domains: vec!["a.example.com".into()],
        enclave: None,
        simulated: true,
        cert_pem: None,
        serial: None,
        valid_from: None,
        valid_until: None,
        message: Some("no attestation evidence".into()),
        task_status: TaskStatusType::Denied,
        nonce: None,
        spki_sha256: None,
    }
}

/// An app of account `acct_id` named `name` that may use `domains`.
pub fn app(acct_id: Uuid, name: &str, domains: &[&str]) -> App {
    App {
        app_id: Uuid::new_v4(),
        acct_id,
        name: name.into(),
        description: Some("it's a '; DROP TABLE apps; --".into()),
        input_image_name: "registry.example/flask".into(),
        output_image_name: "registry.example/flask-sgx".into(),
        isvprodid: 1,
        isvsvn: 2,
        mem_size: 1024,
        threads: 128,
        allowed_domains: domains.iter().map(|d| d.to_string()).collect(),
        whitelisted_domains: vec![],
        pending_task_id: None,
        pending_policy_task_id: None,
        certificate: None,
        advanced_settings: AdvancedSettings::default(),
        labels: Default::default(),
        created_at: 0,
        updated_at: 0,
    }
}

/// An image of app `app_id` (MRENCLAVE a…a, MRSIGNER b…b) tagged `tag`, pending.
pub fn build(acct_id: Uuid, app_id: Uuid, tag: &str) -> Build {
    Build {
        build_id: Uuid::new_v4(),
        acct_id,
        app_id,
        app_name: String::new(),
        docker_info: Some(DockerInfo {
            docker_image_name: "registry.example/flask-sgx".into(),
            docker_version: tag.into(),
            docker_image_sha: None,
            docker_image_size: None,
        }),
        enclave_info: EnclaveInfo {
            mrenclave: "a".repeat(64),
            mrsigner: "b".repeat(64),
            isvprodid: 1,
            isvsvn: 2,
        },
        mem_size: 1024,
        threads: 128,
        status: BuildStatus {
            status: BuildStatusType::Pending,
            status_updated_at: 0,
        },
        pending_task_id: None,
        conversion: None,
        created_at: 0,
        updated_at: 0,
    }
}

/// Runs each named `async fn name(db: Db)` of the file as two tests, `sqlite::name` and
/// `postgres::name`, on a multi-threaded runtime (the store's writer and concurrent callers
/// need more than one thread). Once per file: it defines the two modules.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                super::$name(super::common::sqlite()).await
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                super::$name(super::common::pg()).await
            })*
        }
    };
}

// Effects as the manager's services decide them (`ccm-manager` `service::tasks` and
// `service::cascade`); the store only writes what it is given.

/// What deciding a BUILD_WHITELIST task does.
pub fn image_effect(status: ApprovalStatus) -> Effect {
    match status {
        ApprovalStatus::Approved => whitelist_image(),
        ApprovalStatus::Denied => Effect::of([
            EffectStep::SetImageStatus(BuildStatusType::Rejected),
            EffectStep::RevokeCertificates {
                reason: "the image was rejected".into(),
            },
        ]),
    }
}

/// What deciding a DOMAIN_WHITELIST task does.
pub fn domain_effect(status: ApprovalStatus) -> Effect {
    match status {
        ApprovalStatus::Approved => approve_domains(),
        ApprovalStatus::Denied => Effect::of([EffectStep::WithdrawTaskDomains]),
    }
}

/// Approving an image.
pub fn whitelist_image() -> Effect {
    Effect::of([EffectStep::SetImageStatus(BuildStatusType::Whitelisted)])
}

/// Approving an app's domains.
pub fn approve_domains() -> Effect {
    Effect::of([EffectStep::WhitelistTaskDomains])
}

/// Revoking the object's certificates.
pub fn revoke(reason: &str) -> Effect {
    Effect::of([EffectStep::RevokeCertificates {
        reason: reason.into(),
    }])
}

/// A decision with its effect.
pub fn verdict<'a>(
    status: ApprovalStatus,
    denial_reason: Option<&'a str>,
    effect: &'a Effect,
) -> TaskDecision<'a> {
    TaskDecision {
        status,
        denial_reason,
        effect,
    }
}
