//! Users (`/v1/users`, `/v1/user`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::accounts::AccessRole;

/// `POST /v1/users`: sign up.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    /// E-mail address; the login name.
    pub user_email: String,
    /// Password (at least 8 characters).
    pub user_password: String,
    /// First name.
    #[serde(default)]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default)]
    pub last_name: Option<String>,
    /// The one-time setup token of a new manager (the file `setup-token` in its data
    /// directory): the sign-up that presents it becomes system administrator and uses it up.
    /// Without it, sign-up needs the manager's open sign-up setting and makes an ordinary user.
    #[serde(default)]
    pub setup_token: Option<String>,
}

impl std::fmt::Debug for SignupRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignupRequest")
            .field("user_email", &self.user_email)
            .field("user_password", &"<redacted>")
            .field("first_name", &self.first_name)
            .field("last_name", &self.last_name)
            .field(
                "setup_token",
                &self.setup_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    /// User id.
    pub user_id: Uuid,
    /// E-mail address.
    pub user_email: String,
    /// First name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Creation time.
    pub created_at: i64,
    /// Last successful login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_logged_in_at: Option<i64>,
    /// Whether the user administers the whole manager (the one who signed up with the setup
    /// token does).
    pub is_sysadmin: bool,
    /// `ACTIVE`.
    pub status: String,
    /// The user's roles in the session's selected account (empty without one).
    pub roles: Vec<AccessRole>,
}

/// `POST /v1/users/invite`: add a registered user to the selected account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteUserRequest {
    /// E-mail address of a registered user.
    pub user_email: String,
    /// The role to grant.
    pub role: AccessRole,
}

/// `PATCH /v1/users/{user_id}`: change a member's role in the selected account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    /// The new role.
    pub role: AccessRole,
}
