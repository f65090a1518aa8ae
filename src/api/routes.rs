//! The route table: an axum router that remembers each (method, path) it serves, so that the
//! OpenAPI document can be checked against what is really routed (a route added here without
//! its documentation fails `tests/it/openapi.rs`).

use axum::Router;
use axum::handler::Handler;
use axum::routing::{MethodFilter, on};

use crate::server::AppState;

/// One routed method and path, as OpenAPI spells them (`GET`, `/v1/models/{id}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
}

/// A router and the routes added to it. Routes can only be added through the methods below,
/// so the list cannot miss one.
#[derive(Default)]
pub struct Routes {
    router: Router<AppState>,
    listed: Vec<Route>,
}

impl Routes {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.on(MethodFilter::GET, "GET", path, handler)
    }

    pub fn post<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.on(MethodFilter::POST, "POST", path, handler)
    }

    pub fn put<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.on(MethodFilter::PUT, "PUT", path, handler)
    }

    pub fn delete<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.on(MethodFilter::DELETE, "DELETE", path, handler)
    }

    /// axum merges the method routers of one path, so a path may be added once per method.
    fn on<H, T>(
        mut self,
        filter: MethodFilter,
        method: &'static str,
        path: &'static str,
        handler: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(path, on(filter, handler));
        self.listed.push(Route { method, path });
        self
    }

    /// Applies `f` (a `route_layer`) to the routes added so far.
    pub fn layered(mut self, f: impl FnOnce(Router<AppState>) -> Router<AppState>) -> Self {
        self.router = f(self.router);
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.listed.extend(other.listed);
        self
    }

    pub fn listed(&self) -> &[Route] {
        &self.listed
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}
