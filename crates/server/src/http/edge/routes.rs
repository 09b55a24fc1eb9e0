//! The route table the edge matches a request's path against before routing: each
//! template's number for the metrics, the plugin owning it, and whether a rate limit
//! applies.

use xcore_middleware::RateLimit;

use crate::metrics::requests;

/// The route templates an application serves and the plugin owning each.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    pub(super) matcher: matchit::Router<usize>,
    pub(super) routes: Vec<(Box<str>, Option<&'static str>)>,
}

impl RouteTable {
    /// Adds `template` (axum's syntax: `/items/{id}`, `/files/{*rest}`), owned by `plugin`.
    /// A template already present, or one the router would refuse, is left out: axum
    /// refuses the same ones when the routes are added to it.
    pub fn insert(&mut self, template: &str, plugin: Option<&'static str>) {
        if self.matcher.insert(template, self.routes.len()).is_ok() {
            self.routes.push((template.into(), plugin));
        }
    }
}

/// What the edge knows of a route before routing.
#[derive(Debug)]
pub(super) struct RouteInfo {
    /// Its number among all routes of the process (see `metrics::requests`).
    pub id: usize,
    /// `None` for requests no route matches.
    pub template: Option<Box<str>>,
    pub plugin: Option<&'static str>,
    /// Whether a rate limit applies to it: decided once here, so unlimited routes never
    /// look a quota up.
    pub limited: bool,
}

/// The table's routes, matched, and the entry for paths none matches.
#[derive(Debug)]
pub(super) struct Routes {
    matcher: matchit::Router<usize>,
    pub routes: Vec<RouteInfo>,
    pub unmatched: RouteInfo,
}

impl Routes {
    pub fn new(table: RouteTable, rate_limit: Option<&RateLimit>) -> Self {
        let limited =
            |template: Option<&str>| rate_limit.is_some_and(|limits| limits.applies_to(template));
        let RouteTable { matcher, routes } = table;
        let routes = routes
            .into_iter()
            .map(|(template, plugin)| RouteInfo {
                id: requests::route_id(),
                limited: limited(Some(&template)),
                template: Some(template),
                plugin,
            })
            .collect();
        let unmatched = RouteInfo {
            id: requests::route_id(),
            template: None,
            plugin: None,
            limited: limited(None),
        };
        Self { matcher, routes, unmatched }
    }

    /// The route `path` matches: its index (`None` if none) and what is known of it.
    pub fn find(&self, path: &str) -> (Option<usize>, &RouteInfo) {
        match self.matcher.at(path) {
            Ok(found) => (Some(*found.value), &self.routes[*found.value]),
            Err(_) => (None, &self.unmatched),
        }
    }

    /// The route at `index`, or the unmatched entry.
    pub fn get(&self, index: Option<usize>) -> &RouteInfo {
        index.map_or(&self.unmatched, |index| &self.routes[index])
    }
}
