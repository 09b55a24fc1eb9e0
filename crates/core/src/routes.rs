//! [`Routes`]: a plugin's routes and their OpenAPI description, mounted under the
//! plugin's prefix when the application is built.

use axum::Router;
use axum::routing::MethodRouter;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::UtoipaMethodRouter;

/// A plugin's routes with their OpenAPI description, written relative to the plugin (`/`,
/// `/items/{id}`) and mounted at `<prefix>/`, `<prefix>/items/{id}` when the application
/// is built.
///
/// It mirrors `utoipa_axum::router::OpenApiRouter` (use `utoipa_axum::routes!` with
/// [`routes`](Self::routes)) but keeps paths unbound until the prefix is known, so every
/// route is registered at its full path: no nested router and no prefix stripping on each
/// request.
pub struct Routes<S = ()> {
    routes: Vec<(String, MethodRouter<S>)>,
    openapi: OpenApi,
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    /// No routes.
    pub fn new() -> Self {
        Self::with_openapi(OpenApi::default())
    }

    /// No routes yet, with `openapi` as the start of their description: tags, security
    /// schemes and other components the routes refer to.
    pub fn with_openapi(openapi: OpenApi) -> Self {
        Self { routes: Vec::new(), openapi }
    }

    /// Their OpenAPI description so far, with paths relative to where they will be mounted.
    pub fn openapi(&self) -> &OpenApi {
        &self.openapi
    }

    /// Their OpenAPI description, to state what annotations cannot (a length the
    /// configuration sets, say).
    pub fn openapi_mut(&mut self) -> &mut OpenApi {
        &mut self.openapi
    }

    /// The paths of the routes, relative to where they will be mounted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|(path, _)| path.as_str())
    }

    /// Adds handlers documented with `#[utoipa::path]`, as produced by
    /// `utoipa_axum::routes!(a, b)`; they appear in the OpenAPI document.
    pub fn routes(mut self, (schemas, paths, method_router): UtoipaMethodRouter<S>) -> Self {
        for (path, item) in paths.paths {
            let key = if path.is_empty() { "/".to_owned() } else { path };
            self.routes.push((key.clone(), method_router.clone()));
            match self.openapi.paths.paths.get_mut(&key) {
                Some(existing) => existing.merge_operations(item),
                None => {
                    self.openapi.paths.paths.insert(key, item);
                }
            }
        }
        self.openapi
            .components
            .get_or_insert_with(utoipa::openapi::Components::new)
            .schemas
            .extend(schemas);
        self
    }

    /// Adds an undocumented route. Prefer [`routes`](Self::routes): every route should be
    /// in the OpenAPI document.
    pub fn route(mut self, path: &str, method_router: MethodRouter<S>) -> Self {
        self.routes.push((path.to_owned(), method_router));
        self
    }

    /// Applies a tower layer to every route added so far.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: tower::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
        L::Service: tower::Service<axum::extract::Request> + Clone + Send + Sync + 'static,
        <L::Service as tower::Service<axum::extract::Request>>::Response:
            axum::response::IntoResponse + 'static,
        <L::Service as tower::Service<axum::extract::Request>>::Error:
            Into<std::convert::Infallible> + 'static,
        <L::Service as tower::Service<axum::extract::Request>>::Future: Send + 'static,
    {
        self.routes = self
            .routes
            .into_iter()
            .map(|(path, method_router)| (path, method_router.layer(layer.clone())))
            .collect();
        self
    }

    /// Provides the state the handlers extract, giving routes that need none.
    pub fn with_state<S2>(self, state: S) -> Routes<S2> {
        Routes {
            routes: self
                .routes
                .into_iter()
                .map(|(path, method_router)| (path, method_router.with_state(state.clone())))
                .collect(),
            openapi: self.openapi,
        }
    }
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl Routes {
    /// Merges `other` into `self`.
    pub(crate) fn merge(mut self, other: Routes) -> Self {
        self.routes.extend(other.routes);
        self.openapi.merge(other.openapi);
        self
    }

    /// The routes at `<prefix><path>` (so `/` becomes `<prefix>/`; `""` mounts them as
    /// written), their full paths, and their description under the same paths.
    ///
    /// # Panics
    ///
    /// As axum's `Router::route`, on a malformed or conflicting path; `AppBuilder::build`
    /// reports that as a problem of the plugin instead.
    pub fn mount(self, prefix: &str) -> (Router, Vec<String>, OpenApi) {
        self.mount_at(prefix, false)
    }

    /// As [`mount`](Self::mount), but with `/` served at the bare `prefix` when
    /// `bare_root`: an endpoint such as `/ws`, which clients cannot reach through a
    /// redirect.
    pub fn mount_at(self, prefix: &str, bare_root: bool) -> (Router, Vec<String>, OpenApi) {
        let full = |path: &str| match path {
            "/" if bare_root => prefix.to_owned(),
            path => format!("{prefix}{path}"),
        };
        let mut openapi = self.openapi;
        openapi.paths.paths = std::mem::take(&mut openapi.paths.paths)
            .into_iter()
            .map(|(path, item)| (full(&path), item))
            .collect();
        let mut paths = Vec::with_capacity(self.routes.len());
        let mut router = Router::new();
        for (path, method_router) in self.routes {
            let path = full(&path);
            router = router.route(&path, method_router);
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
        (router, paths, openapi)
    }
}

impl<S> std::fmt::Debug for Routes<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.routes.iter().map(|(path, _)| path)).finish()
    }
}
