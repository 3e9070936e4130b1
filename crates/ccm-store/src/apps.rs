//! Applications and their domain-whitelisting workflow.

use std::collections::BTreeSet;

use ccm_api::accounts::ApprovalPolicy;
use ccm_api::apps::{AdvancedSettings, App};
use ccm_api::tasks::TaskType;
use serde_json::json;
use sqlx::AnyConnection;
use uuid::Uuid;

use crate::error::on_unique;
use crate::hot::Columns;
use crate::paging::{Bind, Key, ListSpec};
use crate::tasks::{self, NewTask};
use crate::util::{json, opt_uuid, to_json, uuid};
use crate::{Actor, Effect, Error, Page, PageRequest, Result, Store, audit};

#[derive(sqlx::FromRow)]
pub(crate) struct AppRow {
    app_id: String,
    acct_id: String,
    name: String,
    description: Option<String>,
    input_image_name: String,
    output_image_name: String,
    isvprodid: i64,
    isvsvn: i64,
    mem_size: i64,
    threads: i64,
    allowed_domains: String,
    whitelisted_domains: String,
    pending_task_id: Option<String>,
    certificate: Option<String>,
    advanced_settings: String,
    labels: String,
    created_at: i64,
    updated_at: i64,
    pending_policy_task_id: Option<String>,
}

pub(crate) const APP_COLS: &str = "app_id, acct_id, name, description, input_image_name, output_image_name, \
     isvprodid, isvsvn, mem_size, threads, allowed_domains, whitelisted_domains, pending_task_id, \
     certificate, advanced_settings, labels, created_at, updated_at, pending_policy_task_id";

impl AppRow {
    /// The row from a result row of either path whose columns are named as in [`APP_COLS`].
    pub(crate) fn from_columns(r: &impl Columns) -> Result<Self> {
        Ok(Self {
            app_id: r.get("app_id")?,
            acct_id: r.get("acct_id")?,
            name: r.get("name")?,
            description: r.get("description")?,
            input_image_name: r.get("input_image_name")?,
            output_image_name: r.get("output_image_name")?,
            isvprodid: r.get("isvprodid")?,
            isvsvn: r.get("isvsvn")?,
            mem_size: r.get("mem_size")?,
            threads: r.get("threads")?,
            allowed_domains: r.get("allowed_domains")?,
            whitelisted_domains: r.get("whitelisted_domains")?,
            pending_task_id: r.get("pending_task_id")?,
            certificate: r.get("certificate")?,
            advanced_settings: r.get("advanced_settings")?,
            labels: r.get("labels")?,
            created_at: r.get("created_at")?,
            updated_at: r.get("updated_at")?,
            pending_policy_task_id: r.get("pending_policy_task_id")?,
        })
    }

    pub(crate) fn into_app(self) -> Result<App> {
        Ok(App {
            app_id: uuid("apps.app_id", &self.app_id)?,
            acct_id: uuid("apps.acct_id", &self.acct_id)?,
            name: self.name,
            description: self.description,
            input_image_name: self.input_image_name,
            output_image_name: self.output_image_name,
            isvprodid: self.isvprodid,
            isvsvn: self.isvsvn,
            mem_size: self.mem_size,
            threads: self.threads,
            allowed_domains: json("apps.allowed_domains", &self.allowed_domains)?,
            whitelisted_domains: json("apps.whitelisted_domains", &self.whitelisted_domains)?,
            pending_task_id: opt_uuid("apps.pending_task_id", self.pending_task_id.as_deref())?,
            pending_policy_task_id: opt_uuid(
                "apps.pending_policy_task_id",
                self.pending_policy_task_id.as_deref(),
            )?,
            certificate: self
                .certificate
                .as_deref()
                .map(|c| json("apps.certificate", c))
                .transpose()?,
            advanced_settings: json("apps.advanced_settings", &self.advanced_settings)?,
            labels: json("apps.labels", &self.labels)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

async fn load(conn: &mut AnyConnection, acct_id: Uuid, app_id: Uuid) -> Result<Option<App>> {
    let row: Option<AppRow> = sqlx::query_as(&format!(
        "SELECT {APP_COLS} FROM apps WHERE app_id = $1 AND acct_id = $2"
    ))
    .bind(app_id.to_string())
    .bind(acct_id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    row.map(AppRow::into_app).transpose()
}

/// Writes every mutable column of `app`.
async fn write(conn: &mut AnyConnection, app: &App) -> Result<()> {
    sqlx::query(
        "UPDATE apps SET name = $1, description = $2, input_image_name = $3, output_image_name = $4, \
         isvprodid = $5, isvsvn = $6, mem_size = $7, threads = $8, allowed_domains = $9, \
         whitelisted_domains = $10, pending_task_id = $11, certificate = $12, advanced_settings = $13, \
         labels = $14, updated_at = $15 WHERE app_id = $16 AND acct_id = $17",
    )
    .bind(&app.name)
    .bind(&app.description)
    .bind(&app.input_image_name)
    .bind(&app.output_image_name)
    .bind(app.isvprodid)
    .bind(app.isvsvn)
    .bind(app.mem_size)
    .bind(app.threads)
    .bind(to_json("apps.allowed_domains", &app.allowed_domains)?)
    .bind(to_json("apps.whitelisted_domains", &app.whitelisted_domains)?)
    .bind(app.pending_task_id.map(|u| u.to_string()))
    .bind(app.certificate.as_ref().map(|c| to_json("apps.certificate", c)).transpose()?)
    .bind(to_json("apps.advanced_settings", &app.advanced_settings)?)
    .bind(to_json("apps.labels", &app.labels)?)
    .bind(app.updated_at)
    .bind(app.app_id.to_string())
    .bind(app.acct_id.to_string())
    .execute(&mut *conn)
    .await
    .map_err(on_unique("app", "name"))?;
    Ok(())
}

fn summary(app: &App) -> serde_json::Value {
    json!({
        "name": app.name,
        "allowed_domains": app.allowed_domains,
        "whitelisted_domains": app.whitelisted_domains,
        "isvprodid": app.isvprodid,
        "isvsvn": app.isvsvn,
        "mem_size": app.mem_size,
        "threads": app.threads,
        "advanced_settings": app.advanced_settings,
    })
}

/// Reconciles the app's pending DOMAIN_WHITELIST task with its domains: domains that are
/// allowed but not whitelisted need approval; the pending task is updated to cover exactly them,
/// or a new one is created, or (when none are left) the pending task is closed as FAILED.
async fn reconcile_domain_task(
    conn: &mut AnyConnection,
    app: &mut App,
    on_approve: &Effect,
    actor: &Actor,
    now: i64,
) -> Result<()> {
    let wl: BTreeSet<&String> = app.whitelisted_domains.iter().collect();
    let needed: Vec<String> = app
        .allowed_domains
        .iter()
        .filter(|d| !wl.contains(d))
        .cloned()
        .collect();
    if let Some(pending) = app.pending_task_id {
        let status = if needed.is_empty() {
            "FAILED"
        } else {
            "INPROGRESS"
        };
        let n = sqlx::query(
            "UPDATE tasks SET domains_added = $1, status = $2, status_updated_at = $3 \
             WHERE task_id = $4 AND status = 'INPROGRESS'",
        )
        .bind(to_json("tasks.domains_added", &needed)?)
        .bind(status)
        .bind(now)
        .bind(pending.to_string())
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if n == 1 {
            if needed.is_empty() {
                app.pending_task_id = None;
                write(conn, app).await?;
            }
            return Ok(());
        }
        app.pending_task_id = None;
    }
    if needed.is_empty() {
        return write(conn, app).await;
    }
    let task_id = Uuid::new_v4();
    app.pending_task_id = Some(task_id);
    write(conn, app).await?;
    let description = format!(
        "Whitelist domains {} for app {}",
        needed.join(", "),
        app.name
    );
    tasks::create(
        conn,
        NewTask {
            acct_id: app.acct_id,
            task_id,
            entity_id: app.app_id,
            task_type: TaskType::DomainWhitelist,
            description,
            requester: actor,
            requester_type: ccm_api::tasks::RequesterType::User,
            domains_added: needed,
            proposal: None,
            on_approve: Some(on_approve),
        },
        now,
    )
    .await?;
    Ok(())
}

/// An edit of an app (see [`Store::update_app`]).
#[derive(Debug, Clone)]
pub struct AppEdit {
    /// The app as the edit leaves it (its `advanced_settings` included).
    pub app: App,
    /// What a changed `advanced_settings` does.
    pub policy: PolicyEdit,
}

/// What a change of an app's attestation policy does, as the service decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyEdit {
    /// Written at once.
    Apply,
    /// Proposed as a POLICY_CHANGE task; only its approval applies it.
    Propose {
        /// The task's id.
        task_id: Uuid,
        /// The task's description.
        description: String,
    },
}

async fn approval_policy(conn: &mut AnyConnection, acct_id: Uuid) -> Result<ApprovalPolicy> {
    let (policy,): (String,) =
        sqlx::query_as("SELECT approval_policy FROM accounts WHERE acct_id = $1")
            .bind(acct_id.to_string())
            .fetch_one(&mut *conn)
            .await?;
    crate::util::enum_value("accounts.approval_policy", &policy, ApprovalPolicy::parse)
}

/// Creates the POLICY_CHANGE task holding `proposed` and marks the app as waiting for it.
async fn propose_policy(
    conn: &mut AnyConnection,
    app: &App,
    proposed: &AdvancedSettings,
    task_id: Uuid,
    description: String,
    actor: &Actor,
    now: i64,
) -> Result<()> {
    sqlx::query("UPDATE apps SET pending_policy_task_id = $1 WHERE app_id = $2 AND acct_id = $3")
        .bind(task_id.to_string())
        .bind(app.app_id.to_string())
        .bind(app.acct_id.to_string())
        .execute(&mut *conn)
        .await?;
    audit::append(
        conn,
        now,
        actor,
        Some(app.acct_id),
        "app.policy_change_request",
        "app",
        Some(app.app_id),
        json!({"task_id": task_id, "before": app.advanced_settings, "proposed": proposed}),
    )
    .await?;
    tasks::create(
        conn,
        NewTask {
            acct_id: app.acct_id,
            task_id,
            entity_id: app.app_id,
            task_type: TaskType::PolicyChange,
            description,
            requester: actor,
            requester_type: ccm_api::tasks::RequesterType::User,
            domains_added: Vec::new(),
            proposal: Some(to_json("tasks.proposal", proposed)?),
            on_approve: None,
        },
        now,
    )
    .await?;
    Ok(())
}

/// Applies (approved) or discards (denied) the proposal of a POLICY_CHANGE task, as the service
/// decided it; the app must still be waiting for this task.
pub(crate) async fn settle_policy_change(
    conn: &mut AnyConnection,
    task_id: Uuid,
    app_id: Uuid,
    apply: Option<&AdvancedSettings>,
    actor: &Actor,
    now: i64,
) -> Result<()> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT acct_id, advanced_settings FROM apps WHERE app_id = $1 AND pending_policy_task_id = $2",
    )
    .bind(app_id.to_string())
    .bind(task_id.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some((acct_id, before)) = row else {
        return Err(Error::InvalidState(
            "the app no longer waits for this policy change".into(),
        ));
    };
    let acct_id = uuid("apps.acct_id", &acct_id)?;
    let before: AdvancedSettings = json("apps.advanced_settings", &before)?;
    match apply {
        Some(settings) => {
            sqlx::query(
                "UPDATE apps SET advanced_settings = $1, pending_policy_task_id = NULL, updated_at = $2 \
                 WHERE app_id = $3",
            )
            .bind(to_json("apps.advanced_settings", settings)?)
            .bind(now)
            .bind(app_id.to_string())
            .execute(&mut *conn)
            .await?;
            audit::append(
                conn,
                now,
                actor,
                Some(acct_id),
                "app.policy_change",
                "app",
                Some(app_id),
                json!({"before": before, "after": settings, "task_id": task_id}),
            )
            .await?;
        }
        None => {
            sqlx::query("UPDATE apps SET pending_policy_task_id = NULL WHERE app_id = $1")
                .bind(app_id.to_string())
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

impl Store {
    /// Creates an app; allowed domains raise a DOMAIN_WHITELIST task (approved at once under the
    /// AUTO_APPROVE policy, writing `on_approve`). `app.whitelisted_domains` and
    /// `pending_task_id` are ignored.
    pub async fn create_app(
        &self,
        app: &App,
        on_approve: &Effect,
        actor: &Actor,
        now: i64,
    ) -> Result<App> {
        let mut w = self.begin_write().await?;
        sqlx::query(&format!(
            "INSERT INTO apps ({APP_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, '[]', NULL, \
             NULL, '{{}}', '{{}}', $12, $12, NULL)"
        ))
        .bind(app.app_id.to_string())
        .bind(app.acct_id.to_string())
        .bind(&app.name)
        .bind(&app.description)
        .bind(&app.input_image_name)
        .bind(&app.output_image_name)
        .bind(app.isvprodid)
        .bind(app.isvsvn)
        .bind(app.mem_size)
        .bind(app.threads)
        .bind(to_json("apps.allowed_domains", &app.allowed_domains)?)
        .bind(now)
        .execute(&mut *w.tx)
        .await
        .map_err(on_unique("app", "name"))?;
        let mut new = App {
            whitelisted_domains: Vec::new(),
            pending_task_id: None,
            pending_policy_task_id: None,
            created_at: now,
            updated_at: now,
            ..app.clone()
        };
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(app.acct_id),
            "app.create",
            "app",
            Some(app.app_id),
            json!({"after": summary(&new)}),
        )
        .await?;
        reconcile_domain_task(&mut w.tx, &mut new, on_approve, actor, now).await?;
        let app = load(&mut w.tx, app.acct_id, app.app_id)
            .await?
            .ok_or(Error::NotFound("app"))?;
        w.commit().await?;
        Ok(app)
    }

    /// One page of an account's apps, by name.
    pub async fn list_apps(&self, acct_id: Uuid, req: &PageRequest) -> Result<Page<App>> {
        let spec = ListSpec {
            name: "apps",
            select: format!("SELECT {APP_COLS} FROM apps"),
            count_from: "apps",
            key: "name",
            text_key: true,
            id: "app_id",
            desc: false,
            scope: vec![("acct_id", Bind::Text(acct_id.to_string()))],
            filters: Vec::new(),
            counts: Some(&crate::counts::APPS),
        };
        let page = spec
            .fetch::<AppRow>(&self.pool, req, |r| {
                (Key::Text(r.name.clone()), r.app_id.clone())
            })
            .await?;
        page.try_map(AppRow::into_app)
    }

    /// The app of an account with this name (names are unique within an account).
    pub async fn app_by_name(&self, acct_id: Uuid, name: &str) -> Result<Option<App>> {
        let row: Option<AppRow> = sqlx::query_as(&format!(
            "SELECT {APP_COLS} FROM apps WHERE acct_id = $1 AND name = $2"
        ))
        .bind(acct_id.to_string())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(AppRow::into_app).transpose()
    }

    /// An app of an account.
    pub async fn get_app(&self, acct_id: Uuid, app_id: Uuid) -> Result<Option<App>> {
        let mut conn = self.pool.acquire().await?;
        load(&mut conn, acct_id, app_id).await
    }

    /// Updates an app in one transaction: `edit` gets the current app and the account's approval
    /// policy and returns the new app with what to do about its attestation policy (or a
    /// validation error, which is passed back and changes nothing). Domains removed from
    /// `allowed_domains` leave the whitelist at once; added ones need approval. A changed
    /// `advanced_settings` is written and audited (`app.policy_change`) under
    /// [`PolicyEdit::Apply`], or kept as the proposal of a new POLICY_CHANGE task under
    /// [`PolicyEdit::Propose`] while the app keeps its current settings. A DOMAIN_WHITELIST
    /// task approved at once (AUTO_APPROVE) writes `on_approve`.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_app<E>(
        &self,
        acct_id: Uuid,
        app_id: Uuid,
        on_approve: &Effect,
        actor: &Actor,
        now: i64,
        edit: impl FnOnce(App, ApprovalPolicy) -> std::result::Result<AppEdit, E>,
    ) -> Result<std::result::Result<App, E>> {
        let mut w = self.begin_write().await?;
        let old = load(&mut w.tx, acct_id, app_id)
            .await?
            .ok_or(Error::NotFound("app"))?;
        let approval = approval_policy(&mut w.tx, acct_id).await?;
        let AppEdit {
            app: mut new,
            policy,
        } = match edit(old.clone(), approval) {
            Ok(e) => e,
            Err(e) => return Ok(Err(e)),
        };
        // Fields the caller may not change.
        new.app_id = old.app_id;
        new.acct_id = old.acct_id;
        new.created_at = old.created_at;
        new.pending_task_id = old.pending_task_id;
        new.pending_policy_task_id = old.pending_policy_task_id;
        new.updated_at = now;
        new.whitelisted_domains = old
            .whitelisted_domains
            .iter()
            .filter(|d| new.allowed_domains.contains(d))
            .cloned()
            .collect();
        let proposed = std::mem::replace(&mut new.advanced_settings, old.advanced_settings.clone());
        let changed = proposed != old.advanced_settings;
        match (&policy, changed) {
            (_, false) => {}
            (PolicyEdit::Apply, true) => {
                new.advanced_settings = proposed.clone();
                audit::append(
                    &mut w.tx,
                    now,
                    actor,
                    Some(acct_id),
                    "app.policy_change",
                    "app",
                    Some(app_id),
                    json!({"before": old.advanced_settings, "after": proposed, "approval": "direct"}),
                )
                .await?;
            }
            (PolicyEdit::Propose { .. }, true) => {
                if let Some(pending) = old.pending_policy_task_id {
                    return Err(Error::InvalidState(format!(
                        "a change of this app's attestation policy is already waiting for \
                         approval (task {pending}); decide that task first"
                    )));
                }
            }
        }
        write(&mut w.tx, &new).await?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(acct_id),
            "app.update",
            "app",
            Some(app_id),
            json!({"before": summary(&old), "after": summary(&new)}),
        )
        .await?;
        reconcile_domain_task(&mut w.tx, &mut new, on_approve, actor, now).await?;
        if let (
            PolicyEdit::Propose {
                task_id,
                description,
            },
            true,
        ) = (policy, changed)
        {
            propose_policy(&mut w.tx, &new, &proposed, task_id, description, actor, now).await?;
        }
        let app = load(&mut w.tx, acct_id, app_id)
            .await?
            .ok_or(Error::NotFound("app"))?;
        w.commit().await?;
        Ok(Ok(app))
    }

    /// Deletes an app with its images and their tasks, writing `cascade` (what happens to its
    /// certificates, as the service decided it) first, in one transaction.
    pub async fn delete_app(
        &self,
        acct_id: Uuid,
        app_id: Uuid,
        cascade: &Effect,
        actor: &Actor,
        now: i64,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        let old = load(&mut w.tx, acct_id, app_id)
            .await?
            .ok_or(Error::NotFound("app"))?;
        sqlx::query(
            "DELETE FROM tasks WHERE acct_id = $1 AND (entity_id = $2 OR entity_id IN \
             (SELECT build_id FROM builds WHERE app_id = $2))",
        )
        .bind(acct_id.to_string())
        .bind(app_id.to_string())
        .execute(&mut *w.tx)
        .await?;
        crate::effects::write(
            &mut w.tx,
            crate::Subject::App(app_id),
            None,
            cascade,
            actor,
            now,
        )
        .await?;
        sqlx::query("DELETE FROM apps WHERE app_id = $1 AND acct_id = $2")
            .bind(app_id.to_string())
            .bind(acct_id.to_string())
            .execute(&mut *w.tx)
            .await?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(acct_id),
            "app.delete",
            "app",
            Some(app_id),
            json!({"before": summary(&old)}),
        )
        .await?;
        w.commit().await
    }
}
