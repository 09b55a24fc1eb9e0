//! The `/auth` endpoints, as an OpenAPI-documented router to mount under any prefix.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::routes;
use xcore_core::Routes;
use xcore_core::http::{ApiError, BearerScheme};
use xcore_middleware::{ClientIp, CurrentUser};

use crate::accounts::Account;
use crate::service::{Auth, AuthError, Tokens};

mod document;

/// The tag of every auth operation in the OpenAPI document.
const TAG: &str = "auth";

#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerScheme),
    tags((name = "auth", description = "Accounts, sessions and two-factor authentication."))
)]
struct AuthDoc;

/// The auth endpoints, relative to where they are mounted (the auth module mounts them at
/// `/auth`; another axum application calls [`Routes::mount`] with its own prefix). The
/// routes that need a caller read it with [`CurrentUser`], so a
/// [`Gate`](xcore_middleware::Gate) over [`Auth::authenticator`] must be installed.
pub fn router(auth: Auth) -> Routes {
    let config = auth.config().clone();
    let mut routes = Routes::with_openapi(AuthDoc::openapi())
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me, update_me, delete_me))
        .routes(routes!(change_password))
        .routes(routes!(request_reset))
        .routes(routes!(confirm_reset))
        .routes(routes!(sessions))
        .routes(routes!(end_session))
        .routes(routes!(otp_setup))
        .routes(routes!(otp_enable))
        .routes(routes!(otp_disable))
        .with_state(auth);
    document::complete(routes.openapi_mut(), &config);
    routes
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        use StatusCode as S;
        let (status, code) = match &self {
            Self::InvalidCredentials => (S::UNAUTHORIZED, "invalid_credentials"),
            Self::OtpRequired => (S::UNAUTHORIZED, "otp_required"),
            Self::InvalidOtp => (S::UNAUTHORIZED, "invalid_otp"),
            Self::InvalidRefresh => (S::UNAUTHORIZED, "invalid_token"),
            Self::Locked { .. } => (S::TOO_MANY_REQUESTS, "account_locked"),
            Self::Disabled => (S::FORBIDDEN, "account_disabled"),
            Self::EmailTaken => (S::CONFLICT, "email_taken"),
            Self::InvalidEmail(_) => (S::UNPROCESSABLE_ENTITY, "invalid_email"),
            Self::Policy(_) => (S::UNPROCESSABLE_ENTITY, "invalid_password"),
            Self::Invalid(_) => (S::UNPROCESSABLE_ENTITY, "validation_error"),
            // A one-time code is a credential: a wrong one is refused like a password.
            Self::InvalidCode => (S::UNAUTHORIZED, "invalid_code"),
            Self::OtpAlreadyEnabled => (S::CONFLICT, "otp_already_enabled"),
            Self::OtpNotSetUp => (S::CONFLICT, "otp_not_set_up"),
            Self::OtpNotEnabled => (S::CONFLICT, "otp_not_enabled"),
            Self::NoSuchSession => (S::NOT_FOUND, "not_found"),
            Self::NoAccount => (S::UNAUTHORIZED, "invalid_token"),
            Self::Unavailable(detail) => {
                tracing::warn!(%detail, "auth request failed: the database is unreachable");
                let error = ApiError::unavailable("the account store is unavailable; try again");
                return error.into_response();
            }
            Self::Internal(detail) => {
                tracing::error!(%detail, "auth request failed");
                return ApiError::internal().into_response();
            }
        };
        let error = ApiError::new(status, code, self.to_string());
        match self {
            Self::Locked { retry_after_secs } => {
                let retry = HeaderValue::from(retry_after_secs);
                ([(header::RETRY_AFTER, retry)], error).into_response()
            }
            _ => error.into_response(),
        }
    }
}

/// An account, as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": 1, "email": "ada@example.com", "display_name": "Ada", "email_verified": false, "otp_enabled": false, "created_at": "2026-12-01T09:00:00Z", "last_login_at": "2026-12-01T09:05:00Z"}))]
pub struct User {
    pub id: i64,
    pub email: String,
    pub display_name: Option<String>,
    pub email_verified: bool,
    /// Whether logging in needs a two-factor code.
    pub otp_enabled: bool,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

impl From<Account> for User {
    fn from(account: Account) -> Self {
        Self {
            id: account.id,
            email: account.email,
            display_name: account.display_name,
            email_verified: account.email_verified,
            otp_enabled: account.otp_enabled,
            created_at: account.created_at.and_utc(),
            last_login_at: account.last_login_at.map(|at| at.and_utc()),
        }
    }
}

/// Tokens, in the shape of an OAuth 2.0 token response (RFC 6749 §5.1).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"access_token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.e30.sig", "refresh_token": "dKW_pJpjfFOwSN2d51100-_MGCc-VYWyjjfdxnvyvlY", "token_type": "bearer", "expires_in": 900}))]
struct TokenResponse {
    access_token: String,
    /// Exchange it at `/auth/refresh` for new tokens; each one works once.
    refresh_token: String,
    /// Always `bearer`.
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: u64,
}

impl From<Tokens> for TokenResponse {
    fn from(tokens: Tokens) -> Self {
        Self {
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            token_type: "bearer",
            expires_in: tokens.expires_in,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery", "display_name": "Ada"}))]
struct RegisterRequest {
    email: String,
    /// 8 to 128 characters (configurable).
    password: String,
    display_name: Option<String>,
}

/// Creates an account.
#[utoipa::path(post, path = "/register", tag = TAG, request_body = RegisterRequest, responses(
    (status = 201, body = User),
    (status = 409, description = "`email_taken`"),
    (status = 422, description = "`invalid_email`, `invalid_password` or `validation_error`"),
))]
async fn register(
    State(auth): State<Auth>,
    Json(body): Json<RegisterRequest>,
) -> Result<(StatusCode, Json<User>), AuthError> {
    let account = auth.register(&body.email, &body.password, body.display_name.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(account.into())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery"}))]
struct LoginRequest {
    email: String,
    password: String,
    /// The authenticator app's current code, or a recovery code, when two-factor is on.
    otp: Option<String>,
}

/// Logs in and starts a session.
#[utoipa::path(post, path = "/login", tag = TAG, request_body = LoginRequest, responses(
    (status = 200, body = TokenResponse),
    (status = 401, description = "`invalid_credentials`, `otp_required` or `invalid_otp`"),
    (status = 403, description = "`account_disabled`"),
    (status = 429, description = "`account_locked`, with `Retry-After`"),
))]
async fn login(
    State(auth): State<Auth>,
    ClientIp(client): ClientIp,
    Json(body): Json<LoginRequest>,
) -> Result<Json<TokenResponse>, AuthError> {
    let tokens = auth.login(&body.email, &body.password, body.otp.as_deref(), client);
    Ok(Json(tokens.await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"refresh_token": "dKW_pJpjfFOwSN2d51100-_MGCc-VYWyjjfdxnvyvlY"}))]
struct RefreshRequest {
    refresh_token: String,
}

/// Exchanges a refresh token for new tokens. The token presented stops working; presenting
/// it again ends the whole session.
#[utoipa::path(post, path = "/refresh", tag = TAG, request_body = RefreshRequest, responses(
    (status = 200, body = TokenResponse),
    (status = 401, description = "`invalid_token`"),
))]
async fn refresh(
    State(auth): State<Auth>,
    Json(body): Json<RefreshRequest>,
) -> Result<Json<TokenResponse>, AuthError> {
    Ok(Json(auth.refresh(&body.refresh_token).await?.into()))
}

/// Ends the session of a refresh token; its access tokens stop working on this node at
/// once, and everywhere when they expire.
#[utoipa::path(post, path = "/logout", tag = TAG, request_body = RefreshRequest, responses(
    (status = 204, description = "the session has ended (or the token was unknown)"),
))]
async fn logout(
    State(auth): State<Auth>,
    Json(body): Json<RefreshRequest>,
) -> Result<StatusCode, AuthError> {
    auth.logout(&body.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's account.
#[utoipa::path(get, path = "/me", tag = TAG, security(("bearer" = [])), responses(
    (status = 200, body = User),
    (status = 401, description = "`invalid_token` or `token_expired`"),
))]
async fn me(State(auth): State<Auth>, user: CurrentUser) -> Result<Json<User>, AuthError> {
    Ok(Json(auth.me(&user).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"display_name": "Ada Lovelace"}))]
struct UpdateMe {
    /// The new display name; `null` or blank clears it, and leaving it out keeps it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    display_name: Option<Option<String>>,
}

/// Reads a field that is present (possibly `null`) as `Some`, so an absent one stays `None`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Changes the caller's profile.
#[utoipa::path(patch, path = "/me", tag = TAG, security(("bearer" = [])), request_body = UpdateMe,
    responses((status = 200, body = User), (status = 422, description = "`validation_error`")))]
async fn update_me(
    State(auth): State<Auth>,
    user: CurrentUser,
    Json(body): Json<UpdateMe>,
) -> Result<Json<User>, AuthError> {
    let account = match body.display_name {
        Some(name) => auth.set_display_name(&user, name.as_deref()).await?,
        None => auth.me(&user).await?,
    };
    Ok(Json(account.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"password": "correct horse battery"}))]
struct DeleteMe {
    /// The account's password, to prove it is its owner deleting it.
    password: String,
}

/// Deletes the caller's account; every session of it ends at once.
#[utoipa::path(delete, path = "/me", tag = TAG, security(("bearer" = [])), request_body = DeleteMe,
    responses(
    (status = 204, description = "deleted"),
    (status = 401, description = "`invalid_credentials`: the password is wrong; `invalid_token`"),
    (status = 429, description = "`account_locked`: too many failed attempts"),
))]
async fn delete_me(
    State(auth): State<Auth>,
    user: CurrentUser,
    Json(body): Json<DeleteMe>,
) -> Result<StatusCode, AuthError> {
    auth.delete_me(&user, &body.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"current_password": "correct horse battery", "new_password": "battery staple horse"}))]
struct ChangePassword {
    current_password: String,
    new_password: String,
}

/// Changes the caller's password; every other session of the account ends.
#[utoipa::path(post, path = "/password", tag = TAG, security(("bearer" = [])),
    request_body = ChangePassword, responses(
    (status = 204, description = "changed"),
    (status = 401, description = "`invalid_credentials`: the current password is wrong"),
    (status = 422, description = "`invalid_password`"),
))]
async fn change_password(
    State(auth): State<Auth>,
    user: CurrentUser,
    Json(body): Json<ChangePassword>,
) -> Result<StatusCode, AuthError> {
    auth.change_password(&user, &body.current_password, &body.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com"}))]
struct ResetRequest {
    email: String,
}

/// Sends a password-reset code to the email if it has an account. The answer is the same
/// whether it has one or not.
#[utoipa::path(post, path = "/password/reset/request", tag = TAG, request_body = ResetRequest,
    responses(
    (status = 202, description = "a code was sent if the account exists"),
    (status = 422, description = "`invalid_email`: not an address"),
))]
async fn request_reset(
    State(auth): State<Auth>,
    Json(body): Json<ResetRequest>,
) -> Result<StatusCode, AuthError> {
    auth.request_reset(&body.email).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "code": "Zk3v9QmT0bXh2LcY7pWn4sR8aE1uJ6dG5oKfV", "new_password": "battery staple horse"}))]
struct ResetConfirm {
    email: String,
    /// The code from the reset message.
    code: String,
    new_password: String,
}

/// Sets a new password with a reset code; every session of the account ends and a lockout
/// is lifted.
#[utoipa::path(post, path = "/password/reset/confirm", tag = TAG, request_body = ResetConfirm,
    responses(
    (status = 204, description = "the password is changed"),
    (status = 401, description = "`invalid_code`: wrong, expired or already used"),
    (status = 422, description = "`invalid_email` or `invalid_password`"),
))]
async fn confirm_reset(
    State(auth): State<Auth>,
    Json(body): Json<ResetConfirm>,
) -> Result<StatusCode, AuthError> {
    auth.confirm_reset(&body.email, &body.code, &body.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A session: a login and the refresh tokens rotated from it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "NHLTXIVjO1xqVZ8Qf-bGXjJsIBCsklXUDvm-MtGgEmw", "refreshed_at": "2026-12-01T09:05:00Z", "expires_at": "2026-12-31T09:05:00Z", "current": true}))]
pub struct SessionInfo {
    pub id: String,
    /// When its current refresh token was issued.
    pub refreshed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Whether the request was made with this session's access token.
    pub current: bool,
}

/// The caller's active sessions, newest first.
#[utoipa::path(get, path = "/sessions", tag = TAG, security(("bearer" = [])),
    responses((status = 200, body = Vec<SessionInfo>)))]
async fn sessions(
    State(auth): State<Auth>,
    user: CurrentUser,
) -> Result<Json<Vec<SessionInfo>>, AuthError> {
    let sessions = auth.sessions(&user).await?;
    Ok(Json(
        sessions
            .into_iter()
            .map(|session| SessionInfo {
                current: session.family == user.session_id,
                id: session.family,
                refreshed_at: session.refreshed_at.and_utc(),
                expires_at: session.expires_at.and_utc(),
            })
            .collect(),
    ))
}

/// Ends one of the caller's sessions.
#[utoipa::path(delete, path = "/sessions/{id}", tag = TAG, security(("bearer" = [])),
    params(("id" = String, Path, description = "the session's id")),
    responses((status = 204, description = "ended"), (status = 404, description = "`not_found`")))]
async fn end_session(
    State(auth): State<Auth>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, AuthError> {
    auth.end_user_session(&user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A two-factor secret to add to an authenticator app.
#[derive(Serialize, ToSchema)]
struct OtpSetupResponse {
    /// The secret in base32, to type in.
    secret: String,
    /// The `otpauth://` URI the QR code holds.
    otpauth_uri: String,
    /// The QR code, as an SVG document.
    qr_svg: String,
}

/// Starts two-factor setup: a new secret, pending until `/auth/otp/enable` confirms a code.
#[utoipa::path(post, path = "/otp/setup", tag = TAG, security(("bearer" = [])), responses(
    (status = 200, body = OtpSetupResponse),
    (status = 409, description = "`otp_already_enabled`"),
))]
async fn otp_setup(
    State(auth): State<Auth>,
    user: CurrentUser,
) -> Result<Json<OtpSetupResponse>, AuthError> {
    let setup = auth.setup_otp(&user).await?;
    let qr = qrcode::QrCode::new(setup.otpauth_uri.as_bytes())
        .map_err(|error| AuthError::Internal(format!("QR code: {error}")))?;
    let qr_svg = qr
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    Ok(Json(OtpSetupResponse { secret: setup.secret, otpauth_uri: setup.otpauth_uri, qr_svg }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"code": "123456"}))]
struct OtpCode {
    /// The authenticator app's current code.
    code: String,
}

/// The recovery codes: each logs in once in place of an authenticator code.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"recovery_codes": ["k7m2-q9xp-4tzd", "a3rv-8wne-2cyh"]}))]
struct RecoveryCodes {
    recovery_codes: Vec<String>,
}

/// Turns two-factor on, confirming the app works with a current code; answers the recovery
/// codes, shown this once.
#[utoipa::path(post, path = "/otp/enable", tag = TAG, security(("bearer" = [])),
    request_body = OtpCode, responses(
    (status = 200, body = RecoveryCodes),
    (status = 401, description = "`invalid_otp`"),
    (status = 409, description = "`otp_already_enabled` or `otp_not_set_up`"),
))]
async fn otp_enable(
    State(auth): State<Auth>,
    user: CurrentUser,
    Json(body): Json<OtpCode>,
) -> Result<Json<RecoveryCodes>, AuthError> {
    Ok(Json(RecoveryCodes { recovery_codes: auth.enable_otp(&user, &body.code).await? }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"password": "correct horse battery"}))]
struct OtpDisable {
    /// An authenticator or recovery code…
    code: Option<String>,
    /// …or the password.
    password: Option<String>,
}

/// Turns two-factor off, with a code or the password as proof.
#[utoipa::path(post, path = "/otp/disable", tag = TAG, security(("bearer" = [])),
    request_body = OtpDisable, responses(
    (status = 204, description = "two-factor is off; the recovery codes are gone"),
    (status = 401, description = "`invalid_otp` or `invalid_credentials`"),
    (status = 409, description = "`otp_not_enabled`"),
))]
async fn otp_disable(
    State(auth): State<Auth>,
    user: CurrentUser,
    Json(body): Json<OtpDisable>,
) -> Result<StatusCode, AuthError> {
    auth.disable_otp(&user, body.code.as_deref(), body.password.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}
