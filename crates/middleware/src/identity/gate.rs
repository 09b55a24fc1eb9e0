//! The [`Gate`]: what a request consults to authenticate its caller ([`Authenticate`]) and
//! to check permissions ([`Permissions`], [`RolePermissions`]).

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::request::Parts;

use super::caller::{CurrentUser, Rejection, bearer};

/// Turns a bearer token into the caller it stands for. The auth crate implements it over
/// its access tokens; tests and other hosts can bring their own.
pub trait Authenticate: Send + Sync + 'static {
    /// The caller `token` stands for.
    ///
    /// # Errors
    ///
    /// [`Rejection::Invalid`], [`Rejection::Expired`] or [`Rejection::Revoked`].
    fn authenticate(&self, token: &str) -> Result<CurrentUser, Rejection>;
}

/// Decides whether a caller holds a permission. Permissions are dotted names such as
/// `plugins.read`; the admin crate provides the implementation backed by its roles
/// table, and [`RolePermissions`] is the one backed by the token's role claims alone.
pub trait Permissions: Send + Sync + 'static {
    fn allows(&self, user: &CurrentUser, permission: &str) -> bool;
}

/// Permissions read from the roles a token carries.
///
/// A role listed in the grants gives the permissions listed for it; a role that is not
/// listed gives the permission of its own name. A granted pattern `*` matches every
/// permission and `plugins.*` every permission under `plugins.`. By default only `admin`
/// is listed, with `*`.
#[derive(Debug, Clone)]
pub struct RolePermissions {
    grants: HashMap<String, Vec<String>>,
}

impl RolePermissions {
    /// Permissions from `grants`: role name to the permission patterns it gives.
    pub fn new(grants: HashMap<String, Vec<String>>) -> Self {
        Self { grants }
    }
}

impl Default for RolePermissions {
    fn default() -> Self {
        Self::new(HashMap::from([("admin".to_owned(), vec!["*".to_owned()])]))
    }
}

impl Permissions for RolePermissions {
    fn allows(&self, user: &CurrentUser, permission: &str) -> bool {
        user.roles.iter().any(|role| match self.grants.get(role) {
            Some(patterns) => patterns.iter().any(|pattern| matches(pattern, permission)),
            None => role == permission,
        })
    }
}

/// Whether `pattern` (a permission, `*`, or `prefix.*`) covers `permission`.
pub fn matches(pattern: &str, permission: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) if prefix.ends_with('.') => permission.starts_with(prefix),
        _ => pattern == permission,
    }
}

/// An [`Authenticate`] and a [`Permissions`] together: what extractors and guards consult.
///
/// The xcore server gives every request its gate in the request's
/// [`RequestContext`](crate::RequestContext); another axum application adds
/// [`Gate::layer`]. Cloning a gate touches one reference count.
#[derive(Clone)]
pub struct Gate {
    rules: Arc<Rules>,
}

struct Rules {
    authenticator: Box<dyn Authenticate>,
    permissions: Box<dyn Permissions>,
}

impl Gate {
    pub fn new(authenticator: impl Authenticate, permissions: impl Permissions) -> Self {
        let rules =
            Rules { authenticator: Box::new(authenticator), permissions: Box::new(permissions) };
        Self { rules: Arc::new(rules) }
    }

    /// The caller `token` stands for.
    ///
    /// # Errors
    ///
    /// As [`Authenticate::authenticate`].
    pub fn authenticate(&self, token: &str) -> Result<CurrentUser, Rejection> {
        self.rules.authenticator.authenticate(token)
    }

    /// Whether `user` holds `permission`.
    pub fn allows(&self, user: &CurrentUser, permission: &str) -> bool {
        self.rules.permissions.allows(user, permission)
    }

    /// The layer putting this gate into every request's extensions, for applications
    /// without the xcore server's request context.
    pub fn layer(&self) -> axum::Extension<Gate> {
        axum::Extension(self.clone())
    }

    /// The caller of the request `parts` belong to: the one a guard already authenticated,
    /// or the one its bearer token stands for.
    ///
    /// # Errors
    ///
    /// [`Rejection::Missing`] without an `Authorization` header, [`Rejection::Malformed`]
    /// for another scheme, and the authenticator's rejections.
    pub fn user_of(&self, parts: &Parts) -> Result<CurrentUser, Rejection> {
        if let Some(user) = parts.extensions.get::<CurrentUser>() {
            return Ok(user.clone());
        }
        let token = bearer(&parts.headers)?.ok_or(Rejection::Missing)?;
        self.authenticate(token)
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}
