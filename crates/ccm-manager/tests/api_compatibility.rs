//! `docs/api-compatibility.md` cannot drift from the manager: every route of the OpenAPI
//! document has a row; every row that says a route works (or exists) names one that does, and
//! every "missing" row one that does not; every endpoint of the reference and every call of
//! `em-client` 4.0.2 has its row; and the request-field table says exactly what each request
//! type's `ReferenceFields` do.
// Test code: a failed check aborts with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use ccm_api::compat::{Disposition, ReferenceField, ReferenceFields};

/// The reference's endpoints (v2.0.0): method, path, operation id.
const REFERENCE: &[(&str, &str, &str)] = &[
    ("GET", "/v1/zones", "getZones"),
    ("GET", "/v1/zones/{zone-id}", "getZone"),
    ("GET", "/v1/zones/{zone-id}/token", "getZoneJoinToken"),
    (
        "GET",
        "/v1/zones/{zone-id}/certificates",
        "GetZoneCertificates",
    ),
    (
        "POST",
        "/v1/zones/{zone-id}/certificates",
        "createZoneCertificate",
    ),
    (
        "POST",
        "/v1/zones/{zone-id}/certificates/rotate",
        "rotateZoneCertificate",
    ),
    ("GET", "/v1/accounts", "getAccounts"),
    ("POST", "/v1/accounts", "createAccount"),
    ("GET", "/v1/accounts/{account-id}", "getAccount"),
    ("DELETE", "/v1/accounts/{account-id}", "deleteAccount"),
    ("PATCH", "/v1/accounts/{account-id}", "updateAccount"),
    ("GET", "/v1/builds", "getAllBuilds"),
    ("POST", "/v1/builds", "createBuild"),
    ("GET", "/v1/builds/{build-id}", "getBuild"),
    ("DELETE", "/v1/builds/{build-id}", "deleteBuild"),
    ("PATCH", "/v1/builds/{build-id}", "updateBuild"),
    (
        "POST",
        "/v1/builds/convert-app/nitro-enclaves",
        "convertAppBuildNitroEnclaves",
    ),
    ("POST", "/v1/builds/convert-app/aci", "convertAppBuildAci"),
    ("GET", "/v1/nodes", "getAllNodes"),
    ("POST", "/v1/nodes", "provisionNode"),
    ("GET", "/v1/nodes/{node-id}", "getNode"),
    ("PATCH", "/v1/nodes/{node-id}", "updateNode"),
    (
        "GET",
        "/v1/nodes/{node-id}/certificate",
        "getNodeCertificate",
    ),
    (
        "GET",
        "/v1/nodes/{node-id}/certificate-details",
        "getNodeCertificateDetails",
    ),
    ("POST", "/v1/nodes/{node-id}/deactivate", "deactivateNode"),
    ("GET", "/v1/certificates/{cert-id}", "getCertificate"),
    ("GET", "/v1/apps", "getAllApps"),
    ("POST", "/v1/apps", "addApplication"),
    ("GET", "/v1/apps/{app-id}", "getApp"),
    ("PATCH", "/v1/apps/{app-id}", "updateApp"),
    ("DELETE", "/v1/apps/{app-id}", "deleteApp"),
    (
        "GET",
        "/v1/apps/{app-id}/node/{node-id}/certificate-details",
        "getAppNodeCertificateDetails",
    ),
    (
        "GET",
        "/v1/apps/{app-id}/node/{node-id}/certificate",
        "getAppCertificate",
    ),
    ("GET", "/v1/tasks", "getAllTasks"),
    ("GET", "/v1/tasks/{task-id}", "getTask"),
    ("PATCH", "/v1/tasks/{task-id}", "UpdateTask"),
    ("DELETE", "/v1/tasks/{task-id}", "deleteTask"),
    ("GET", "/v1/tasks/status/{task-id}", "getTaskStatus"),
    ("GET", "/v1/user", "getLoggedInUser"),
    ("GET", "/v1/users", "getAllUsers"),
    ("POST", "/v1/users", "createUser"),
    ("POST", "/v1/users/invite", "inviteUser"),
    ("GET", "/v1/users/{user-id}", "getUser"),
    ("PATCH", "/v1/users/{user-id}", "UpdateUser"),
    ("DELETE", "/v1/users/{user-id}", "deleteUserAccount"),
    ("GET", "/v1/users/{user-id}/accounts", "getUserAccounts"),
    (
        "DELETE",
        "/v1/users/{user-id}/accounts",
        "deleteUserFromAccount",
    ),
    ("POST", "/v1/sys/auth", "authenticateUser"),
    ("POST", "/v1/sys/auth/discover", "discover"),
    ("POST", "/v1/sys/session/refresh", "refresh"),
    ("POST", "/v1/sys/session/terminate", "terminate"),
    (
        "POST",
        "/v1/sys/session/select_account/{account-id}",
        "selectAccountBodrum",
    ),
    ("GET", "/v1/sys/version", "getManagerVersion"),
    ("PATCH", "/v1/system/config", "sysadminUpdateClusterConfig"),
    ("GET", "/v1/system/config", "sysadminGetClusterConfigure"),
    ("POST", "/v1/registry", "createRegistry"),
    ("GET", "/v1/registry", "getAllRegistries"),
    ("GET", "/v1/registry/{registry-id}", "getRegistry"),
    ("PATCH", "/v1/registry/{registry-id}", "updateRegistry"),
    ("DELETE", "/v1/registry/{registry-id}", "deleteRegistry"),
    ("GET", "/v1/registry/app/{app-id}", "getRegistryForApp"),
];

/// Every call of `em-client` 4.0.2 (`src/client/mod.rs`): name, method, path.
const EM_CLIENT: &[(&str, &str, &str)] = &[
    ("create_account", "POST", "/v1/accounts"),
    ("delete_account", "DELETE", "/v1/accounts/{account_id}"),
    ("get_account", "GET", "/v1/accounts/{account_id}"),
    ("get_accounts", "GET", "/v1/accounts"),
    (
        "select_account",
        "POST",
        "/v1/accounts/select_account/{account_id}",
    ),
    ("update_account", "PATCH", "/v1/accounts/{account_id}"),
    ("add_application", "POST", "/v1/apps"),
    ("delete_app", "DELETE", "/v1/apps/{app_id}"),
    ("get_all_apps", "GET", "/v1/apps"),
    ("get_app", "GET", "/v1/apps/{app_id}"),
    (
        "get_app_certificate",
        "GET",
        "/v1/apps/{app_id}/node/{node_id}/certificate",
    ),
    (
        "get_app_node_certificate_details",
        "GET",
        "/v1/apps/{app_id}/node/{node_id}/certificate-details",
    ),
    (
        "get_apps_unique_labels",
        "GET",
        "/v1/apps/unique_labels/count",
    ),
    ("update_app", "PATCH", "/v1/apps/{app_id}"),
    ("create_application_config", "POST", "/v1/app_configs"),
    (
        "delete_application_config",
        "DELETE",
        "/v1/app_configs/{config_id}",
    ),
    ("get_all_application_configs", "GET", "/v1/app_configs"),
    (
        "get_application_config",
        "GET",
        "/v1/app_configs/{config_id}",
    ),
    (
        "get_specific_runtime_application_config",
        "GET",
        "/v1/runtime/app_configs/{config_id}",
    ),
    (
        "update_application_config",
        "PATCH",
        "/v1/app_configs/{config_id}",
    ),
    (
        "approve_approval_request",
        "POST",
        "/v1/approval_requests/{request_id}/approve",
    ),
    ("create_approval_request", "POST", "/v1/approval_requests"),
    (
        "delete_approval_request",
        "DELETE",
        "/v1/approval_requests/{request_id}",
    ),
    (
        "deny_approval_request",
        "POST",
        "/v1/approval_requests/{request_id}/deny",
    ),
    ("get_all_approval_requests", "GET", "/v1/approval_requests"),
    (
        "get_approval_request",
        "GET",
        "/v1/approval_requests/{request_id}",
    ),
    (
        "get_approval_request_result",
        "POST",
        "/v1/approval_requests/{request_id}/result",
    ),
    ("authenticate_user", "POST", "/v1/sys/auth"),
    ("convert_app_build", "POST", "/v1/builds/convert-app"),
    ("create_build", "POST", "/v1/builds"),
    ("delete_build", "DELETE", "/v1/builds/{build_id}"),
    ("get_all_builds", "GET", "/v1/builds"),
    ("get_build", "GET", "/v1/builds/{build_id}"),
    (
        "get_build_deployments",
        "GET",
        "/v1/builds/deployments/{build_id}",
    ),
    ("update_build", "PATCH", "/v1/builds/{build_id}"),
    ("get_certificate", "GET", "/v1/certificates/{cert_id}"),
    ("new_certificate", "POST", "/v1/certificates"),
    ("create_dataset", "POST", "/v1/datasets"),
    ("delete_dataset", "DELETE", "/v1/datasets/{dataset_id}"),
    ("get_all_datasets", "GET", "/v1/datasets"),
    ("get_dataset", "GET", "/v1/datasets/{dataset_id}"),
    ("update_dataset", "PATCH", "/v1/datasets/{dataset_id}"),
    ("deactivate_node", "POST", "/v1/nodes/{node_id}/deactivate"),
    ("get_all_nodes", "GET", "/v1/nodes"),
    ("get_node", "GET", "/v1/nodes/{node_id}"),
    (
        "get_node_certificate",
        "GET",
        "/v1/nodes/{node_id}/certificate",
    ),
    (
        "get_node_certificate_details",
        "GET",
        "/v1/nodes/{node_id}/certificate-details",
    ),
    (
        "get_nodes_unique_labels",
        "GET",
        "/v1/nodes/unique_labels/count",
    ),
    ("provision_node", "POST", "/v1/nodes"),
    ("update_node", "PATCH", "/v1/nodes/{node_id}"),
    ("update_node_status", "POST", "/v1/node/status"),
    ("create_registry", "POST", "/v1/registry"),
    ("delete_registry", "DELETE", "/v1/registry/{registry_id}"),
    ("get_all_registries", "GET", "/v1/registry"),
    ("get_registry", "GET", "/v1/registry/{registry_id}"),
    ("get_registry_for_app", "GET", "/v1/registry/app/{app_id}"),
    ("get_registry_for_image", "GET", "/v1/image/registry"),
    ("update_registry", "PATCH", "/v1/registry/{registry_id}"),
    ("get_manager_version", "GET", "/v1/sys/version"),
    ("get_all_tasks", "GET", "/v1/tasks"),
    ("get_task", "GET", "/v1/tasks/{task_id}"),
    ("get_task_status", "GET", "/v1/tasks/status/{task_id}"),
    ("update_task", "PATCH", "/v1/tasks/{task_id}"),
    ("convert_app", "POST", "/v1/tools/converter/convert-app"),
    (
        "accept_terms_and_conditions",
        "PATCH",
        "/v1/users/terms_and_conditions",
    ),
    ("change_password", "POST", "/v1/users/change_password"),
    ("confirm_email", "POST", "/v1/users/confirm_email"),
    ("create_user", "POST", "/v1/users"),
    ("delete_user_account", "DELETE", "/v1/users/{user_id}"),
    (
        "delete_user_from_account",
        "DELETE",
        "/v1/users/{user_id}/accounts",
    ),
    ("forgot_password", "POST", "/v1/users/forgot_password"),
    ("get_all_users", "GET", "/v1/users"),
    ("get_logged_in_user", "GET", "/v1/user"),
    ("get_user", "GET", "/v1/users/{user_id}"),
    ("invite_user", "POST", "/v1/users/invite"),
    ("process_invitations", "POST", "/v1/users/process_invite"),
    (
        "resend_confirm_email",
        "POST",
        "/v1/users/resend_confirm_email",
    ),
    (
        "resend_invitation",
        "POST",
        "/v1/users/{user_id}/resend_invite",
    ),
    (
        "reset_password",
        "POST",
        "/v1/users/{user_id}/reset_password",
    ),
    ("update_user", "PATCH", "/v1/users/{user_id}"),
    (
        "validate_password_reset_token",
        "POST",
        "/v1/users/{user_id}/validate_token",
    ),
    (
        "create_workflow_graph",
        "POST",
        "/v1/workflows/draft/graphs",
    ),
    (
        "delete_workflow_graph",
        "DELETE",
        "/v1/workflows/draft/graphs/{graph_id}",
    ),
    (
        "get_all_workflow_graphs",
        "GET",
        "/v1/workflows/draft/graphs",
    ),
    (
        "get_workflow_graph",
        "GET",
        "/v1/workflows/draft/graphs/{graph_id}",
    ),
    (
        "update_workflow_graph",
        "PUT",
        "/v1/workflows/draft/graphs/{graph_id}",
    ),
    (
        "create_final_workflow_graph",
        "POST",
        "/v1/workflows/final/graphs",
    ),
    (
        "delete_final_workflow_graph",
        "DELETE",
        "/v1/workflows/final/graphs/{graph_id}/{version}",
    ),
    (
        "get_all_final_workflow_graphs",
        "GET",
        "/v1/workflows/final/graphs",
    ),
    (
        "get_final_workflow_graph",
        "GET",
        "/v1/workflows/final/graphs/{graph_id}/{version}",
    ),
    (
        "get_full_final_workflow_graph",
        "GET",
        "/v1/workflows/final/graphs/{graph_id}",
    ),
    (
        "update_final_workflow_graph",
        "POST",
        "/v1/workflows/final/graphs/{graph_id}",
    ),
    ("get_zone", "GET", "/v1/zones/{zone_id}"),
    ("get_zone_join_token", "GET", "/v1/zones/{zone_id}/token"),
    ("get_zones", "GET", "/v1/zones"),
    (
        "get_runtime_application_config",
        "GET",
        "/v1/runtime/app_configs",
    ),
];

const STATUSES: &[&str] = &["works", "differs", "incompatible", "missing", "ccm"];

fn doc() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/api-compatibility.md"
    );
    std::fs::read_to_string(path).unwrap()
}

/// The rows of the table under the `## {heading}` section, as cells (backticks kept).
fn table(doc: &str, heading: &str) -> Vec<Vec<String>> {
    let start = doc
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let section = &doc[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    section
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---"))
        .skip(1)
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// `METHOD /path/{}` with every parameter name dropped.
fn endpoint(method: &str, path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    format!("{} {out}", method.to_ascii_uppercase())
}

fn unquote(cell: &str) -> &str {
    cell.trim_matches('`')
}

/// The endpoint rows: endpoint -> (reference operation, em-client call, status).
fn endpoint_rows(doc: &str) -> BTreeMap<String, (String, String, String)> {
    let mut rows = BTreeMap::new();
    for cells in table(doc, "Endpoints") {
        assert_eq!(cells.len(), 5, "a row of five cells: {cells:?}");
        let (method, path) = unquote(&cells[0]).split_once(' ').unwrap();
        let key = endpoint(method, path);
        let status = cells[3].clone();
        assert!(
            STATUSES.contains(&status.as_str()),
            "status {status:?} of {key}"
        );
        assert!(
            !cells[4].is_empty() || status == "works",
            "{key}: say what differs"
        );
        let old = rows.insert(
            key.clone(),
            (
                unquote(&cells[1]).to_string(),
                unquote(&cells[2]).to_string(),
                status,
            ),
        );
        assert!(old.is_none(), "two rows for {key}");
    }
    rows
}

/// The manager's routes, from its OpenAPI document.
fn routes() -> BTreeSet<String> {
    let doc = serde_json::to_value(ccm_manager::openapi()).unwrap();
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "patch", "delete"] {
            if item.get(method).is_some() {
                out.insert(endpoint(method, path));
            }
        }
    }
    out
}

#[test]
fn every_route_has_a_row_and_every_row_tells_the_truth() {
    let rows = endpoint_rows(&doc());
    let routes = routes();
    assert!(routes.len() > 50, "{routes:?}");
    for r in &routes {
        let (_, _, status) = rows
            .get(r)
            .unwrap_or_else(|| panic!("{r} has no row in docs/api-compatibility.md"));
        assert_ne!(status, "missing", "{r} exists: its row says missing");
    }
    for (e, (reference, client, status)) in &rows {
        if status == "missing" {
            assert!(!routes.contains(e), "{e} says missing but exists");
            assert!(
                reference != "—" || client != "—",
                "{e}: a missing row is for a reference endpoint or an em-client call"
            );
        } else {
            assert!(
                routes.contains(e),
                "{e} says {status}, but there is no such route"
            );
        }
        if status == "ccm" {
            assert!(
                reference == "—" && client == "—",
                "{e} is in the reference or em-client: not a ccm-only route"
            );
        }
    }
}

#[test]
fn every_reference_endpoint_and_em_client_call_has_its_row() {
    let rows = endpoint_rows(&doc());
    for (method, path, operation) in REFERENCE {
        let e = endpoint(method, path);
        let (reference, _, _) = rows
            .get(&e)
            .unwrap_or_else(|| panic!("the reference's {operation} ({e}) has no row"));
        assert_eq!(reference, operation, "{e}");
    }
    for (call, method, path) in EM_CLIENT {
        let e = endpoint(method, path);
        let (_, client, _) = rows
            .get(&e)
            .unwrap_or_else(|| panic!("em-client's {call} ({e}) has no row"));
        assert_eq!(client, call, "{e}");
    }
    let named: BTreeSet<&str> = REFERENCE
        .iter()
        .map(|r| r.2)
        .chain(EM_CLIENT.iter().map(|c| c.0))
        .collect();
    for (e, (reference, client, _)) in &rows {
        for name in [reference, client] {
            assert!(
                name == "—" || named.contains(name.as_str()),
                "{e} names {name}, which is neither a reference operation nor an em-client call"
            );
        }
    }
}

#[test]
fn the_field_table_says_what_the_request_types_do() {
    fn of<T: ReferenceFields>(name: &'static str) -> (&'static str, &'static [ReferenceField]) {
        (name, T::reference_fields())
    }
    use ccm_api::{accounts, apps, builds, users, zones};
    let types = [
        of::<accounts::AccountRequest>("AccountRequest"),
        of::<accounts::AccountUpdateRequest>("AccountUpdateRequest"),
        of::<apps::AppRequest>("AppRequest"),
        of::<apps::AppUpdateRequest>("AppUpdateRequest"),
        of::<builds::CreateBuildRequest>("CreateBuildRequest"),
        of::<builds::ConvertAppBuildRequest>("ConvertAppBuildRequest"),
        of::<users::SignupRequest>("SignupRequest"),
        of::<users::UpdateUserRequest>("UpdateUserRequest"),
        of::<users::InviteUserRequest>("InviteUserRequest"),
        of::<zones::ZoneUpdateRequest>("ZoneUpdateRequest"),
        of::<ccm_api::tasks::TaskUpdateRequest>("TaskUpdateRequest"),
    ];
    let mut code = BTreeSet::new();
    for (name, fields) in types {
        for f in fields {
            let d = match f.disposition {
                Disposition::Ignore => "ignored",
                Disposition::Refuse(_) => "refused",
            };
            assert!(
                code.insert((name.to_string(), f.path.to_string(), d.to_string())),
                "{name} lists {} twice",
                f.path
            );
        }
    }
    let documented: BTreeSet<(String, String, String)> = table(&doc(), "Request fields")
        .into_iter()
        .map(|c| {
            assert_eq!(c.len(), 4, "{c:?}");
            (c[0].clone(), unquote(&c[1]).to_string(), c[2].clone())
        })
        .collect();
    assert_eq!(
        documented.difference(&code).collect::<Vec<_>>(),
        Vec::<&(String, String, String)>::new(),
        "documented but not so in the code"
    );
    assert_eq!(
        code.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String, String)>::new(),
        "in the code but not documented"
    );
}
