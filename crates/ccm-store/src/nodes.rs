//! Compute nodes: enrollment (nonces, join-token use), status, heartbeats, deactivation, node
//! certificates and zone node policy.

use ccm_api::nodes::{Node, NodeStatus, NodeStatusType, SgxInfo};
use ccm_api::tasks::TaskType;
use ccm_api::zones::JoinTokenInfo;
use serde_json::json;
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::effects::{self, Effect, Subject};
use crate::paging::{Bind, Key, ListSpec};
use crate::tasks::{self, NewTask};
use crate::util::{enum_value, json, opt_uuid, to_json, uuid};
use crate::{Actor, Error, Page, PageRequest, Result, Store, audit};
use ccm_api::tasks::RequesterType;

/// A join token with what enrollment needs to check it.
#[derive(Debug, Clone)]
pub struct JoinTokenRecord {
    /// The token's metadata.
    pub info: JoinTokenInfo,
    /// The zone's account.
    pub acct_id: Uuid,
    /// Hex SHA-256 of the secret.
    pub secret_hash: String,
}

/// A node to enroll.
#[derive(Debug, Clone)]
pub struct NewNode {
    /// Node id.
    pub node_id: Uuid,
    /// Account.
    pub acct_id: Uuid,
    /// Zone.
    pub zone_id: Uuid,
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Reported IP address.
    pub ipaddress: Option<String>,
    /// Reported platform software version.
    pub version: Option<String>,
    /// What the quote proved.
    pub sgx_info: SgxInfo,
    /// The node certificate (PEM).
    pub cert_pem: String,
    /// Its serial (hex).
    pub cert_serial: String,
    /// Its expiry.
    pub cert_not_after: i64,
    /// The join token used.
    pub token_id: Uuid,
    /// Hex SHA-256 of the join token secret presented.
    pub secret_hash: String,
    /// Hex SHA-256 of the enrollment nonce used.
    pub nonce_hash: String,
    /// The NODE_ATTESTATION task the node waits for, when its zone requires approval; `None`
    /// admits the node at once.
    pub approval: Option<NodeApproval>,
}

/// The NODE_ATTESTATION task an enrolling node waits for, as the service decided it.
#[derive(Debug, Clone)]
pub struct NodeApproval {
    /// The task's id.
    pub task_id: Uuid,
    /// The task's description.
    pub description: String,
    /// What approving the task does; written at once in an account that approves
    /// automatically.
    pub on_approve: Effect,
}

/// What the mTLS check needs to know about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAuth {
    /// Node id.
    pub node_id: Uuid,
    /// Account.
    pub acct_id: Uuid,
    /// Zone.
    pub zone_id: Uuid,
    /// Name.
    pub name: String,
    /// Status.
    pub status: NodeStatusType,
    /// The platform.
    pub sgx_info: SgxInfo,
}

impl NodeAuth {
    /// From the `nodes` columns acct_id, zone_id, name, status and sgx_info as stored.
    fn from_columns(
        node_id: Uuid,
        acct: &str,
        zone: &str,
        name: String,
        status: &str,
        sgx: &str,
    ) -> Result<Self> {
        Ok(Self {
            node_id,
            acct_id: uuid("nodes.acct_id", acct)?,
            zone_id: uuid("nodes.zone_id", zone)?,
            name,
            status: enum_value("nodes.status", status, NodeStatusType::parse)?,
            sgx_info: json("nodes.sgx_info", sgx)?,
        })
    }
}

/// A node certificate's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCertRecord {
    /// The node.
    pub node_id: Uuid,
    /// The zone whose CA issued it.
    pub zone_id: Uuid,
    /// Expiry.
    pub not_after: i64,
    /// Revocation time.
    pub revoked_at: Option<i64>,
}

/// Outcome of an enrollment nonce lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    /// Unknown (never issued, or issued for another join token).
    Unknown,
    /// Past its expiry.
    Expired,
    /// Already used.
    Used,
    /// Usable.
    Fresh,
}

#[derive(sqlx::FromRow)]
struct NodeRow {
    node_id: String,
    acct_id: String,
    zone_id: String,
    name: String,
    description: Option<String>,
    ipaddress: Option<String>,
    status: String,
    created_at: i64,
    status_updated_at: i64,
    last_seen_at: Option<i64>,
    last_seen_version: Option<String>,
    attested_at: i64,
    sgx_info: String,
    cert_pem: String,
    pending_task_id: Option<String>,
}

const NODE_COLS: &str = "node_id, acct_id, zone_id, name, description, ipaddress, status, created_at, \
     status_updated_at, last_seen_at, last_seen_version, attested_at, sgx_info, cert_pem, pending_task_id";

impl NodeRow {
    fn into_node(self) -> Result<Node> {
        let sgx_info: SgxInfo = json("nodes.sgx_info", &self.sgx_info)?;
        Ok(Node {
            node_id: uuid("nodes.node_id", &self.node_id)?,
            acct_id: uuid("nodes.acct_id", &self.acct_id)?,
            zone_id: uuid("nodes.zone_id", &self.zone_id)?,
            name: self.name,
            description: self.description,
            ipaddress: self.ipaddress,
            status: NodeStatus {
                status: enum_value("nodes.status", &self.status, NodeStatusType::parse)?,
                created_at: self.created_at,
                status_updated_at: self.status_updated_at,
                last_seen_at: self.last_seen_at,
                last_seen_version: self.last_seen_version,
            },
            attested_at: self.attested_at,
            certificate: Some(self.cert_pem),
            attestation_type: "DCAP".into(),
            platform: if sgx_info.simulated {
                "SIMULATED"
            } else {
                "SGX"
            }
            .into(),
            sgx_info,
            apps: Vec::new(),
            pending_task_id: opt_uuid("nodes.pending_task_id", self.pending_task_id.as_deref())?,
        })
    }
}

async fn load(conn: &mut AnyConnection, acct_id: Uuid, node_id: Uuid) -> Result<Option<Node>> {
    let row: Option<NodeRow> = sqlx::query_as(&format!(
        "SELECT {NODE_COLS} FROM nodes WHERE node_id = $1 AND acct_id = $2"
    ))
    .bind(node_id.to_string())
    .bind(acct_id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    row.map(NodeRow::into_node).transpose()
}

/// Revokes a node's own certificates (its mTLS identity).
pub(crate) async fn revoke_node_identity(
    conn: &mut AnyConnection,
    node_id: Uuid,
    now: i64,
) -> Result<()> {
    sqlx::query("UPDATE node_certs SET revoked_at = $1 WHERE node_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(node_id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Records a heartbeat on a node: the time `$1` and the agent's version `$2` (when it sent one)
/// on node `$3`.
const NODE_SEEN: &str = "UPDATE nodes SET last_seen_at = $1, \
     last_seen_version = COALESCE($2, last_seen_version) WHERE node_id = $3";

/// Running instances reported by one statement (and transaction) of a heartbeat.
const HEARTBEAT_UPDATE_CHUNK: usize = 250;

impl Store {
    /// A join token by id, with its account and secret hash.
    pub async fn join_token_record(&self, token_id: Uuid) -> Result<Option<JoinTokenRecord>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            token_id: String,
            zone_id: String,
            acct_id: String,
            secret_hash: String,
            created_at: i64,
            expires_at: i64,
            single_use: i64,
            use_count: i64,
            last_used_at: Option<i64>,
            revoked_at: Option<i64>,
            created_by: Option<String>,
            description: Option<String>,
        }
        let row: Option<Row> = sqlx::query_as(
            "SELECT token_id, zone_id, acct_id, secret_hash, created_at, expires_at, single_use, \
             use_count, last_used_at, revoked_at, created_by, description FROM join_tokens WHERE token_id = $1",
        )
        .bind(token_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(JoinTokenRecord {
                info: JoinTokenInfo {
                    token_id: uuid("join_tokens.token_id", &r.token_id)?,
                    zone_id: uuid("join_tokens.zone_id", &r.zone_id)?,
                    created_at: r.created_at,
                    expires_at: r.expires_at,
                    single_use: r.single_use != 0,
                    use_count: r.use_count,
                    last_used_at: r.last_used_at,
                    revoked_at: r.revoked_at,
                    created_by: opt_uuid("join_tokens.created_by", r.created_by.as_deref())?,
                    description: r.description,
                },
                acct_id: uuid("join_tokens.acct_id", &r.acct_id)?,
                secret_hash: r.secret_hash,
            })
        })
        .transpose()
    }

    /// Stores an enrollment nonce (its hash) for a join token; expired nonces are purged.
    pub async fn create_enroll_nonce(
        &self,
        token_id: Uuid,
        nonce_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        sqlx::query("DELETE FROM enroll_nonces WHERE expires_at < $1")
            .bind(now.saturating_sub(3600))
            .execute(&mut *w.tx)
            .await?;
        sqlx::query(
            "INSERT INTO enroll_nonces (nonce_hash, token_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(nonce_hash)
        .bind(token_id.to_string())
        .bind(now)
        .bind(expires_at)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await
    }

    /// The state of an enrollment nonce presented with `token_id`.
    pub async fn enroll_nonce_state(
        &self,
        token_id: Uuid,
        nonce_hash: &str,
        now: i64,
    ) -> Result<NonceState> {
        let row: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT expires_at, used_at FROM enroll_nonces WHERE nonce_hash = $1 AND token_id = $2",
        )
        .bind(nonce_hash)
        .bind(token_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => NonceState::Unknown,
            Some((_, Some(_))) => NonceState::Used,
            Some((exp, None)) if exp <= now => NonceState::Expired,
            Some(_) => NonceState::Fresh,
        })
    }

    /// Enrolls a node in one transaction: consumes the nonce, uses the join token (both by
    /// conditional updates, so a nonce admits one node and a single-use token one node even
    /// across replicas), stores the node and its certificate, and audits. With an
    /// [`NodeApproval`] the node waits (INPROGRESS) for its NODE_ATTESTATION task, which an
    /// account that approves automatically decides at once by writing its effect.
    pub async fn enroll_node(&self, n: &NewNode, now: i64) -> Result<Node> {
        let mut w = self.begin_write().await?;
        let used = sqlx::query(
            "UPDATE enroll_nonces SET used_at = $1 WHERE nonce_hash = $2 AND token_id = $3 \
             AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(&n.nonce_hash)
        .bind(n.token_id.to_string())
        .execute(&mut *w.tx)
        .await?
        .rows_affected();
        if used != 1 {
            return Err(Error::InvalidState(
                "the enrollment nonce was already used or has expired".into(),
            ));
        }
        let token = sqlx::query(
            "UPDATE join_tokens SET use_count = use_count + 1, last_used_at = $1 \
             WHERE token_id = $2 AND secret_hash = $3 AND revoked_at IS NULL AND expires_at > $1 \
             AND (single_use = 0 OR use_count = 0)",
        )
        .bind(now)
        .bind(n.token_id.to_string())
        .bind(&n.secret_hash)
        .execute(&mut *w.tx)
        .await?
        .rows_affected();
        if token != 1 {
            return Err(Error::InvalidState(
                "the join token is no longer valid (revoked, expired or used up)".into(),
            ));
        }
        let status = if n.approval.is_some() {
            NodeStatusType::Inprogress
        } else {
            NodeStatusType::Provisioned
        };
        sqlx::query(&format!(
            "INSERT INTO nodes ({NODE_COLS}, simulated, cert_serial, cert_not_after, token_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, NULL, $9, $8, $10, $11, $12, $13, $14, $15, $16)"
        ))
        .bind(n.node_id.to_string())
        .bind(n.acct_id.to_string())
        .bind(n.zone_id.to_string())
        .bind(&n.name)
        .bind(&n.description)
        .bind(&n.ipaddress)
        .bind(status.as_str())
        .bind(now)
        .bind(&n.version)
        .bind(to_json("nodes.sgx_info", &n.sgx_info)?)
        .bind(&n.cert_pem)
        .bind(n.approval.as_ref().map(|a| a.task_id.to_string()))
        .bind(i64::from(n.sgx_info.simulated))
        .bind(&n.cert_serial)
        .bind(n.cert_not_after)
        .bind(n.token_id.to_string())
        .execute(&mut *w.tx)
        .await?;
        sqlx::query(
            "INSERT INTO node_certs (serial, node_id, zone_id, not_after) VALUES ($1, $2, $3, $4)",
        )
        .bind(&n.cert_serial)
        .bind(n.node_id.to_string())
        .bind(n.zone_id.to_string())
        .bind(n.cert_not_after)
        .execute(&mut *w.tx)
        .await?;
        let actor = Actor {
            user_id: None,
            name: format!("node:{}", n.name),
        };
        audit::append(
            &mut w.tx,
            now,
            &actor,
            Some(n.acct_id),
            "node.enroll",
            "node",
            Some(n.node_id),
            json!({"zone_id": n.zone_id, "token_id": n.token_id, "fmspc": n.sgx_info.fmspc,
                   "tcb_status": n.sgx_info.tcb_status, "simulated": n.sgx_info.simulated,
                   "ppid_hash": n.sgx_info.ppid_hash, "status": status.as_str()}),
        )
        .await?;
        if let Some(approval) = &n.approval {
            tasks::create(
                &mut w.tx,
                NewTask {
                    acct_id: n.acct_id,
                    task_id: approval.task_id,
                    entity_id: n.node_id,
                    task_type: TaskType::NodeAttestation,
                    description: approval.description.clone(),
                    requester: &actor,
                    requester_type: RequesterType::System,
                    domains_added: Vec::new(),
                    proposal: None,
                    on_approve: Some(&approval.on_approve),
                },
                now,
            )
            .await?;
        }
        let node = load(&mut w.tx, n.acct_id, n.node_id)
            .await?
            .ok_or(Error::NotFound("node"))?;
        w.commit().await?;
        Ok(node)
    }

    /// One page of an account's nodes, by name, optionally in one status.
    pub async fn list_nodes(
        &self,
        acct_id: Uuid,
        status: Option<NodeStatusType>,
        req: &PageRequest,
    ) -> Result<Page<Node>> {
        let filters = status
            .map(|s| vec![("status", Bind::Text(s.as_str().to_string()))])
            .unwrap_or_default();
        let spec = ListSpec {
            name: "nodes",
            select: format!("SELECT {NODE_COLS} FROM nodes"),
            count_from: "nodes",
            key: "name",
            text_key: true,
            id: "node_id",
            desc: false,
            scope: vec![("acct_id", Bind::Text(acct_id.to_string()))],
            filters,
            counts: Some(&crate::counts::NODES),
        };
        let page = spec
            .fetch::<NodeRow>(&self.pool, req, |r| {
                (Key::Text(r.name.clone()), r.node_id.clone())
            })
            .await?;
        page.try_map(NodeRow::into_node)
    }

    /// A node of an account.
    pub async fn get_node(&self, acct_id: Uuid, node_id: Uuid) -> Result<Option<Node>> {
        let mut conn = self.pool.acquire().await?;
        load(&mut conn, acct_id, node_id).await
    }

    /// What the mTLS check needs to know about a node (any account).
    pub async fn node_auth(&self, node_id: Uuid) -> Result<Option<NodeAuth>> {
        let row: Option<(String, String, String, String, String)> = sqlx::query_as(
            "SELECT acct_id, zone_id, name, status, sgx_info FROM nodes WHERE node_id = $1",
        )
        .bind(node_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(acct, zone, name, status, sgx)| {
            NodeAuth::from_columns(node_id, &acct, &zone, name, &status, &sgx)
        })
        .transpose()
    }

    /// A node certificate by serial (hex) with what the mTLS check needs to know about its node
    /// (`None` when the node is gone), read in one query for the per-request node authentication
    /// (the node part is what [`Store::node_auth`] gives).
    pub async fn node_cert_auth(
        &self,
        serial: &str,
    ) -> Result<Option<(NodeCertRecord, Option<NodeAuth>)>> {
        type Row = (
            String,
            String,
            i64,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        const SQL: &str = "SELECT c.node_id, c.zone_id, c.not_after, c.revoked_at, \
             n.acct_id, n.zone_id, n.name, n.status, n.sgx_info \
             FROM node_certs c LEFT JOIN nodes n ON n.node_id = c.node_id WHERE c.serial = $1";
        let row: Option<Row> = self
            .hot_read(
                |c| {
                    use rusqlite::OptionalExtension as _;
                    Ok(c.prepare_cached(SQL)?
                        .query_row([serial], |r| {
                            Ok((
                                r.get(0)?,
                                r.get(1)?,
                                r.get(2)?,
                                r.get(3)?,
                                r.get(4)?,
                                r.get(5)?,
                                r.get(6)?,
                                r.get(7)?,
                                r.get(8)?,
                            ))
                        })
                        .optional()?)
                },
                |c| {
                    let serial = serial.to_string();
                    Box::pin(async move {
                        Ok(sqlx::query_as(SQL).bind(serial).fetch_optional(c).await?)
                    })
                },
            )
            .await?;
        let Some((node, zone, not_after, revoked_at, acct, nzone, name, status, sgx)) = row else {
            return Ok(None);
        };
        let node_id = uuid("node_certs.node_id", &node)?;
        let rec = NodeCertRecord {
            node_id,
            zone_id: uuid("node_certs.zone_id", &zone)?,
            not_after,
            revoked_at,
        };
        let auth = match (acct, nzone, name, status, sgx) {
            (Some(acct), Some(zone), Some(name), Some(status), Some(sgx)) => Some(
                NodeAuth::from_columns(node_id, &acct, &zone, name, &status, &sgx)?,
            ),
            _ => None,
        };
        Ok(Some((rec, auth)))
    }

    /// Deactivates a node at once, writing `effect` (what deactivation does, as the service
    /// decided it) with the audit entry in one transaction. Deactivating a deactivated node
    /// writes nothing.
    pub async fn deactivate_node(
        &self,
        acct_id: Uuid,
        node_id: Uuid,
        effect: &Effect,
        actor: &Actor,
        now: i64,
    ) -> Result<Node> {
        let mut w = self.begin_write().await?;
        let before = load(&mut w.tx, acct_id, node_id)
            .await?
            .ok_or(Error::NotFound("node"))?;
        if before.status.status != NodeStatusType::Deactivated {
            effects::write(&mut w.tx, Subject::Node(node_id), None, effect, actor, now).await?;
            audit::append(
                &mut w.tx,
                now,
                actor,
                Some(acct_id),
                "node.deactivate",
                "node",
                Some(node_id),
                json!({"name": before.name, "status_before": before.status.status.as_str()}),
            )
            .await?;
        }
        let node = load(&mut w.tx, acct_id, node_id)
            .await?
            .ok_or(Error::NotFound("node"))?;
        w.commit().await?;
        Ok(node)
    }

    /// Records a heartbeat: last seen time and version, status RUNNING (from PROVISIONED or
    /// STOPPED), and the running application instances (issuance task ids of this node). Returns the
    /// node's status, `None` for an unknown node.
    pub async fn node_heartbeat(
        &self,
        node_id: Uuid,
        version: Option<&str>,
        running: &[Uuid],
        now: i64,
    ) -> Result<Option<NodeStatusType>> {
        // A running node's heartbeat appends nothing to the audit log: one statement, outside
        // the writers' queue.
        let mut w = self.begin_unaudited_write().await?;
        static SEEN_RUNNING: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!("{NODE_SEEN} AND status NOT IN ('PROVISIONED', 'STOPPED') RETURNING status")
        });
        let seen: Option<(String,)> = sqlx::query_as(&SEEN_RUNNING)
            .bind(now)
            .bind(version)
            .bind(node_id.to_string())
            .fetch_optional(&mut *w.tx)
            .await?;
        w.commit().await?;
        let status = match seen {
            Some((status,)) => enum_value("nodes.status", &status, NodeStatusType::parse)?,
            None => match self.node_seen_running(node_id, version, now).await? {
                Some(status) => status,
                None => return Ok(None),
            },
        };
        // A busy node reports thousands of instances: a few statements, not one per instance,
        // each in a transaction of its own, so that certificate issuance is held up by one
        // statement at most on SQLite (one writer at a time) and not at all on PostgreSQL
        // (reports append nothing to the audit log, so they skip its lock). Only the node's own
        // certificates count.
        for chunk in running.chunks(HEARTBEAT_UPDATE_CHUNK) {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.report_instances(node_id, chunk, now).await {
                    // Deleting an account (its certificates, their reports) while its node
                    // reports locks the same rows the other way round.
                    Err(e) if e.is_deadlock() && attempt < 3 => continue,
                    other => break other?,
                }
            }
        }
        Ok(Some(status))
    }

    /// The heartbeat of a node that is not RUNNING (yet, or again): it becomes RUNNING, with an
    /// audit entry. `None` for an unknown node.
    async fn node_seen_running(
        &self,
        node_id: Uuid,
        version: Option<&str>,
        now: i64,
    ) -> Result<Option<NodeStatusType>> {
        let mut w = self.begin_write().await?;
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT status, acct_id FROM nodes WHERE node_id = $1")
                .bind(node_id.to_string())
                .fetch_optional(&mut *w.tx)
                .await?;
        let Some((status, acct)) = row else {
            return Ok(None);
        };
        let mut status = enum_value("nodes.status", &status, NodeStatusType::parse)?;
        if matches!(
            status,
            NodeStatusType::Provisioned | NodeStatusType::Stopped
        ) {
            audit::append(
                &mut w.tx,
                now,
                &Actor::system(),
                Some(uuid("nodes.acct_id", &acct)?),
                "node.running",
                "node",
                Some(node_id),
                json!({"from": status.as_str()}),
            )
            .await?;
            status = NodeStatusType::Running;
            sqlx::query(
                "UPDATE nodes SET status = 'RUNNING', status_updated_at = $1 WHERE node_id = $2",
            )
            .bind(now)
            .bind(node_id.to_string())
            .execute(&mut *w.tx)
            .await?;
        }
        sqlx::query(NODE_SEEN)
            .bind(now)
            .bind(version)
            .bind(node_id.to_string())
            .execute(&mut *w.tx)
            .await?;
        w.commit().await?;
        Ok(Some(status))
    }

    /// Records that `running` (issuance task ids of the node's certificates) were running at
    /// `now`, in one statement and transaction.
    async fn report_instances(&self, node_id: Uuid, running: &[Uuid], now: i64) -> Result<()> {
        let mut w = self.begin_unaudited_write().await?;
        let sql = format!(
            "INSERT INTO instance_reports (task_id, last_reported_at) \
             SELECT task_id, {} FROM certificates WHERE {} = {} AND task_id IN ({}) \
             ON CONFLICT (task_id) DO UPDATE SET last_reported_at = excluded.last_reported_at",
            self.backend.param(1),
            // Found by task id: the node's own index would visit all its certificates.
            self.backend.not_for_index("node_id"),
            self.backend.param(2),
            self.backend.params(3, running.len())
        );
        let mut q = sqlx::query(&sql).bind(now).bind(node_id.to_string());
        for cert in running {
            q = q.bind(cert.to_string());
        }
        q.execute(&mut *w.tx).await?;
        w.commit().await
    }

    /// Marks RUNNING nodes whose last heartbeat is older than `cutoff` as STOPPED; returns how
    /// many changed.
    pub async fn mark_stale_nodes(&self, cutoff: i64, now: i64) -> Result<u64> {
        let stale: Vec<(String, String)> = sqlx::query_as(
            "SELECT node_id, acct_id FROM nodes WHERE status = 'RUNNING' AND COALESCE(last_seen_at, created_at) < $1",
        )
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await?;
        if stale.is_empty() {
            return Ok(0);
        }
        let mut w = self.begin_write().await?;
        let mut n = 0;
        for (node, acct) in stale {
            let changed = sqlx::query(
                "UPDATE nodes SET status = 'STOPPED', status_updated_at = $1 WHERE node_id = $2 \
                 AND status = 'RUNNING' AND COALESCE(last_seen_at, created_at) < $3",
            )
            .bind(now)
            .bind(&node)
            .bind(cutoff)
            .execute(&mut *w.tx)
            .await?
            .rows_affected();
            if changed == 1 {
                n += 1;
                audit::append(
                    &mut w.tx,
                    now,
                    &Actor::system(),
                    Some(uuid("nodes.acct_id", &acct)?),
                    "node.stopped",
                    "node",
                    Some(uuid("nodes.node_id", &node)?),
                    json!({"last_seen_before": cutoff}),
                )
                .await?;
            }
        }
        w.commit().await?;
        Ok(n)
    }

    /// Records a renewed node certificate (the old ones stay valid until they expire).
    pub async fn renew_node_cert(
        &self,
        node_id: Uuid,
        zone_id: Uuid,
        cert_pem: &str,
        serial: &str,
        not_after: i64,
        now: i64,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE nodes SET cert_pem = $1, cert_serial = $2, cert_not_after = $3 \
             WHERE node_id = $4 AND status <> 'DEACTIVATED'",
        )
        .bind(cert_pem)
        .bind(serial)
        .bind(not_after)
        .bind(node_id.to_string())
        .execute(&mut *w.tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Err(Error::InvalidState("the node is deactivated".into()));
        }
        sqlx::query(
            "INSERT INTO node_certs (serial, node_id, zone_id, not_after) VALUES ($1, $2, $3, $4)",
        )
        .bind(serial)
        .bind(node_id.to_string())
        .bind(zone_id.to_string())
        .bind(not_after)
        .execute(&mut *w.tx)
        .await?;
        let (acct,): (String,) = sqlx::query_as("SELECT acct_id FROM nodes WHERE node_id = $1")
            .bind(node_id.to_string())
            .fetch_one(&mut *w.tx)
            .await?;
        audit::append(
            &mut w.tx,
            now,
            &Actor::system(),
            Some(uuid("nodes.acct_id", &acct)?),
            "node.certificate_renew",
            "node",
            Some(node_id),
            json!({"serial": serial, "not_after": not_after}),
        )
        .await?;
        w.commit().await
    }

    /// The account owning a zone.
    pub async fn zone_account(&self, zone_id: Uuid) -> Result<Option<Uuid>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT acct_id FROM zones WHERE zone_id = $1")
            .bind(zone_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|(a,)| uuid("zones.acct_id", &a)).transpose()
    }

    /// The zone's node policy (JSON), if one was set.
    pub async fn zone_node_policy(&self, zone_id: Uuid) -> Result<Option<String>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT policy FROM zone_node_policy WHERE zone_id = $1")
                .bind(zone_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(p,)| p))
    }

    /// Sets the zone's node policy (JSON) of a zone in `acct_id`.
    pub async fn set_zone_node_policy(
        &self,
        acct_id: Uuid,
        zone_id: Uuid,
        policy: &serde_json::Value,
        actor: &Actor,
        now: i64,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        let exists: Option<(String,)> =
            sqlx::query_as("SELECT zone_id FROM zones WHERE zone_id = $1 AND acct_id = $2")
                .bind(zone_id.to_string())
                .bind(acct_id.to_string())
                .fetch_optional(&mut *w.tx)
                .await?;
        if exists.is_none() {
            return Err(Error::NotFound("zone"));
        }
        sqlx::query(
            "INSERT INTO zone_node_policy (zone_id, policy, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (zone_id) DO UPDATE SET policy = $2, updated_at = $3",
        )
        .bind(zone_id.to_string())
        .bind(policy.to_string())
        .bind(now)
        .execute(&mut *w.tx)
        .await?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(acct_id),
            "zone.node_policy",
            "zone",
            Some(zone_id),
            json!({"policy": policy}),
        )
        .await?;
        w.commit().await
    }
}
