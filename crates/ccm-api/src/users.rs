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
    /// The token of an invitation to this e-mail address: the new user joins the inviting
    /// account with the invited role, and the invitation is used up. Sign-up with an
    /// invitation is allowed even where open sign-up is off.
    #[serde(default)]
    pub invitation_token: Option<String>,
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
            .field(
                "invitation_token",
                &self.invitation_token.as_ref().map(|_| "<redacted>"),
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

/// `POST /v1/users/invite`: invite an e-mail address (signed up or not) to the selected
/// account. The reference's clients send `roles` (a list); ccm keeps one role per member, so
/// the highest role listed is granted. ccm's older single `role` is still accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteUserRequest {
    /// E-mail address of the person to invite.
    pub user_email: String,
    /// Roles to grant (the highest is granted).
    #[serde(default)]
    pub roles: Vec<AccessRole>,
    /// The role to grant (ccm's older form; give `roles` or `role`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<AccessRole>,
    /// First name, for the invitee's sign-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Last name, for the invitee's sign-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
}

/// Whether a user's membership of an account is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserAccountStatus {
    /// A member.
    Active,
    /// Invited; not accepted yet.
    Pending,
}

/// A pending invitation (the token itself is shown once, to the inviter, when it is made).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Invitation {
    /// Invitation id.
    pub invitation_id: Uuid,
    /// The inviting account.
    pub acct_id: Uuid,
    /// The inviting account's name.
    pub account_name: String,
    /// The invited address.
    pub user_email: String,
    /// The role the invitee gets.
    pub role: AccessRole,
    /// Who invited.
    pub invited_by: String,
    /// Creation time.
    pub created_at: i64,
    /// The invitation cannot be accepted after this time.
    pub expires_at: i64,
}

/// `POST /v1/users/invite` (201): the invitee as a pending user. `user_id` is the user's id
/// when the address has signed up, else the invitation's id.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InvitedUser {
    /// The user's id, or the invitation's id for an address that has not signed up.
    pub user_id: Uuid,
    /// The invited address.
    pub user_email: String,
    /// First name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// `PENDING` until the invitation is accepted.
    pub user_account_status: UserAccountStatus,
    /// The role granted on acceptance.
    pub roles: Vec<AccessRole>,
    /// The invitation.
    pub invitation: Invitation,
    /// The single-use invitation token, to hand to the invitee: sign-up with it
    /// (`invitation_token`), or, when already signed up, accept with
    /// `POST /v1/users/process_invite`.
    pub invitation_token: String,
    /// The console's sign-up link carrying the token.
    pub signup_url: String,
    /// Whether the invitation was also e-mailed (SMTP configured).
    pub emailed: bool,
}

impl std::fmt::Debug for InvitedUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvitedUser")
            .field("user_id", &self.user_id)
            .field("user_email", &self.user_email)
            .field("invitation", &self.invitation)
            .field("emailed", &self.emailed)
            .finish_non_exhaustive()
    }
}

/// `POST /v1/users/process_invite`: accept or decline pending invitations (by account id).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessInviteRequest {
    /// Accounts whose invitations to accept.
    #[serde(default)]
    pub accepts: Option<Vec<Uuid>>,
    /// Accounts whose invitations to decline.
    #[serde(default)]
    pub rejects: Option<Vec<Uuid>>,
}

/// `PATCH /v1/users/{user_id}`: change a member's role in the selected account. The
/// reference's clients send `roles` (the highest is granted); ccm's single `role` also works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    /// The new role (ccm's form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<AccessRole>,
    /// The new roles (the reference's form; the highest is granted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<AccessRole>>,
}

/// `POST /v1/users/change_password`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChangeRequest {
    /// The password in force.
    pub current_password: String,
    /// The new password (at least 8 characters).
    pub new_password: String,
}

/// `POST /v1/users/{user_id}/reset_password`: set a new password with a reset token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    /// The single-use reset token an administrator issued.
    pub reset_token: String,
    /// The new password (at least 8 characters).
    pub new_password: String,
}

/// `POST /v1/users/{user_id}/validate_token`: check a reset token without using it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateTokenRequest {
    /// The reset token.
    pub reset_token: String,
}

/// `POST /v1/users/forgot_password`: ask for a password reset link by e-mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotPasswordRequest {
    /// The e-mail address of the user.
    pub user_email: String,
}

/// The answer to a valid reset token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ValidateTokenResponse {
    /// The user the token resets.
    pub user_email: String,
}

/// `POST /v1/users/{user_id}/reset_token` (201): a password reset token issued by a system
/// administrator. Shown once; only its hash is stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResetTokenResponse {
    /// The user.
    pub user_id: Uuid,
    /// The user's e-mail.
    pub user_email: String,
    /// The single-use token, for `POST /v1/users/{user_id}/reset_password`.
    pub reset_token: String,
    /// The console's reset link carrying the token.
    pub reset_url: String,
    /// The token cannot be used after this time.
    pub expires_at: i64,
    /// Whether the link was also e-mailed to the user (SMTP configured).
    pub emailed: bool,
}

impl std::fmt::Debug for ResetTokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResetTokenResponse")
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

macro_rules! redacted_debug {
    ($ty:ident) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($ty), " { <redacted> }"))
            }
        }
    };
}
redacted_debug!(PasswordChangeRequest);
redacted_debug!(PasswordResetRequest);
redacted_debug!(ValidateTokenRequest);

impl crate::compat::ReferenceFields for SignupRequest {
    fn reference_fields() -> &'static [crate::compat::ReferenceField] {
        // ccm rate-limits sign-ups per address and e-mail instead of a CAPTCHA.
        const FIELDS: &[crate::compat::ReferenceField] =
            &[crate::compat::ReferenceField::ignore("recaptcha_response")];
        FIELDS
    }
}

impl crate::compat::ReferenceFields for UpdateUserRequest {
    fn reference_fields() -> &'static [crate::compat::ReferenceField] {
        // A member's name is theirs to keep: an account MANAGER changes roles only.
        const FIELDS: &[crate::compat::ReferenceField] = &[
            crate::compat::ReferenceField::ignore("first_name"),
            crate::compat::ReferenceField::ignore("last_name"),
        ];
        FIELDS
    }
}

crate::compat::no_reference_fields!(
    InviteUserRequest,
    ProcessInviteRequest,
    PasswordChangeRequest,
    PasswordResetRequest,
    ValidateTokenRequest,
    ForgotPasswordRequest,
);
