//! Container registries an account stores credentials for. The credentials are sealed by the
//! caller (the manager's master key); this module stores the sealed bytes and never sees a
//! password.

use ccm_api::registries::Registry;
use serde_json::json;
use uuid::Uuid;

use crate::error::on_unique;
use crate::util::uuid;
use crate::{Actor, Error, Result, Store, audit};

/// A registry to create.
#[derive(Debug, Clone)]
pub struct NewRegistry {
    /// The registry as the API shows it.
    pub registry: Registry,
    /// The sealed credentials.
    pub credentials_sealed: Vec<u8>,
}

/// A change to a registry; `None` fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct RegistryEdit {
    /// New URL and its host.
    pub url: Option<(String, String)>,
    /// New description (`Some(None)` removes it).
    pub description: Option<Option<String>>,
    /// New user name and sealed credentials.
    pub credentials: Option<(String, Vec<u8>)>,
}

#[derive(sqlx::FromRow)]
struct RegistryRow {
    registry_id: String,
    url: String,
    host: String,
    description: Option<String>,
    username: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl RegistryRow {
    fn into_api(self) -> Result<Registry> {
        Ok(Registry {
            registry_id: uuid("registries.registry_id", &self.registry_id)?,
            url: self.url,
            host: self.host,
            description: self.description,
            username: self.username,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

const COLS: &str = "registry_id, url, host, description, username, created_at, updated_at";

impl Store {
    /// Stores a registry; conflict when the account has one for the same host.
    pub async fn create_registry(
        &self,
        acct_id: Uuid,
        new: &NewRegistry,
        actor: &Actor,
        now: i64,
    ) -> Result<Registry> {
        let r = &new.registry;
        let mut w = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO registries (registry_id, acct_id, url, host, description, username, \
             credentials_sealed, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(r.registry_id.to_string())
        .bind(acct_id.to_string())
        .bind(&r.url)
        .bind(&r.host)
        .bind(&r.description)
        .bind(&r.username)
        .bind(&new.credentials_sealed)
        .bind(now)
        .execute(&mut *w.tx)
        .await
        .map_err(on_unique("registry", "url"))?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(acct_id),
            "registry.create",
            "registry",
            Some(r.registry_id),
            json!({"url": r.url, "host": r.host, "username": r.username}),
        )
        .await?;
        w.commit().await?;
        let mut out = r.clone();
        out.created_at = now;
        out.updated_at = now;
        Ok(out)
    }

    /// An account's registries, by host.
    pub async fn list_registries(&self, acct_id: Uuid) -> Result<Vec<Registry>> {
        let rows: Vec<RegistryRow> = sqlx::query_as(&format!(
            "SELECT {COLS} FROM registries WHERE acct_id = $1 ORDER BY host, registry_id"
        ))
        .bind(acct_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(RegistryRow::into_api).collect()
    }

    /// A registry of an account.
    pub async fn get_registry(&self, acct_id: Uuid, registry_id: Uuid) -> Result<Option<Registry>> {
        let row: Option<RegistryRow> = sqlx::query_as(&format!(
            "SELECT {COLS} FROM registries WHERE acct_id = $1 AND registry_id = $2"
        ))
        .bind(acct_id.to_string())
        .bind(registry_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(RegistryRow::into_api).transpose()
    }

    /// The account's registry for an image host (lower-case `host[:port]`), with its sealed
    /// credentials.
    pub async fn registry_for_host(
        &self,
        acct_id: Uuid,
        host: &str,
    ) -> Result<Option<(Registry, Vec<u8>)>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            registry: RegistryRow,
            credentials_sealed: Vec<u8>,
        }
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLS}, credentials_sealed FROM registries WHERE acct_id = $1 AND host = $2"
        ))
        .bind(acct_id.to_string())
        .bind(host)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.registry.into_api()?, r.credentials_sealed)))
            .transpose()
    }

    /// Changes a registry; conflict when a new URL's host is another registry's.
    pub async fn update_registry(
        &self,
        acct_id: Uuid,
        registry_id: Uuid,
        edit: &RegistryEdit,
        actor: &Actor,
        now: i64,
    ) -> Result<Registry> {
        let mut w = self.begin_write().await?;
        let id = registry_id.to_string();
        let acct = acct_id.to_string();
        let before: RegistryRow = sqlx::query_as(&format!(
            "SELECT {COLS} FROM registries WHERE acct_id = $1 AND registry_id = $2"
        ))
        .bind(&acct)
        .bind(&id)
        .fetch_optional(&mut *w.tx)
        .await?
        .ok_or(Error::NotFound("registry"))?;
        let (url, host) = edit
            .url
            .clone()
            .unwrap_or((before.url.clone(), before.host.clone()));
        let description = edit
            .description
            .clone()
            .unwrap_or(before.description.clone());
        let mut changed = Vec::new();
        if edit.url.is_some() {
            changed.push("url");
        }
        if edit.description.is_some() {
            changed.push("description");
        }
        sqlx::query(
            "UPDATE registries SET url = $1, host = $2, description = $3, updated_at = $4 \
             WHERE registry_id = $5",
        )
        .bind(&url)
        .bind(&host)
        .bind(&description)
        .bind(now)
        .bind(&id)
        .execute(&mut *w.tx)
        .await
        .map_err(on_unique("registry", "url"))?;
        if let Some((username, sealed)) = &edit.credentials {
            changed.push("credential");
            sqlx::query(
                "UPDATE registries SET username = $1, credentials_sealed = $2 WHERE registry_id = $3",
            )
            .bind(username)
            .bind(sealed)
            .bind(&id)
            .execute(&mut *w.tx)
            .await?;
        }
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(acct_id),
            "registry.update",
            "registry",
            Some(registry_id),
            json!({"changed": changed, "before": {"url": before.url}, "after": {"url": url}}),
        )
        .await?;
        let after: RegistryRow = sqlx::query_as(&format!(
            "SELECT {COLS} FROM registries WHERE registry_id = $1"
        ))
        .bind(&id)
        .fetch_one(&mut *w.tx)
        .await?;
        w.commit().await?;
        after.into_api()
    }

    /// Deletes a registry of an account.
    pub async fn delete_registry(
        &self,
        acct_id: Uuid,
        registry_id: Uuid,
        actor: &Actor,
        now: i64,
    ) -> Result<()> {
        let mut w = self.begin_write().await?;
        let row: Option<(String,)> = sqlx::query_as(
            "DELETE FROM registries WHERE acct_id = $1 AND registry_id = $2 RETURNING url",
        )
        .bind(acct_id.to_string())
        .bind(registry_id.to_string())
        .fetch_optional(&mut *w.tx)
        .await?;
        let (url,) = row.ok_or(Error::NotFound("registry"))?;
        audit::append(
            &mut w.tx,
            now,
            actor,
            Some(acct_id),
            "registry.delete",
            "registry",
            Some(registry_id),
            json!({"url": url}),
        )
        .await?;
        w.commit().await
    }
}
