//! What the manager benchmarks share: a signed-up user with a selected account.

use serde_json::{Value, json};

/// Signs `email` up, logs in, creates the account `account` and selects it; returns the token
/// (and `expect`s each step: a benchmark aborts with the reason).
pub async fn sign_up_with_account(
    http: &reqwest::Client,
    base: &str,
    email: &str,
    account: &str,
) -> String {
    http.post(format!("{base}/v1/users"))
        .json(&json!({"user_email": email, "user_password": "benchmark-password"}))
        .send()
        .await
        .expect("signup");
    let auth: Value = http
        .post(format!("{base}/v1/sys/auth"))
        .basic_auth(email, Some("benchmark-password"))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login json");
    let token = auth["access_token"].as_str().expect("token").to_string();
    let acct: Value = http
        .post(format!("{base}/v1/accounts"))
        .bearer_auth(&token)
        .json(&json!({"name": account}))
        .send()
        .await
        .expect("account")
        .json()
        .await
        .expect("json");
    http.post(format!(
        "{base}/v1/sys/session/select_account/{}",
        acct["acct_id"].as_str().expect("id")
    ))
    .bearer_auth(&token)
    .send()
    .await
    .expect("select");
    token
}
