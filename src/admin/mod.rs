//! The admin web page: its HTML, style and script, compiled into the binary (plain files, no
//! build step, nothing fetched from elsewhere), and the headers they are served with. The page
//! signs in with the admin key and calls the admin API; docs/admin.md describes it.

/// The page, its style and its script, by the name they are served under (`/admin`,
/// `/admin/admin.css`, `/admin/admin.js`).
pub const INDEX_HTML: &str = include_str!("page/index.html");
pub const ADMIN_CSS: &str = include_str!("page/admin.css");
pub const ADMIN_JS: &str = include_str!("page/admin.js");

/// Only this server's own files, no inline script or style, no frames, no forms posted
/// elsewhere, and the API called on this origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'none'";

/// The headers every file of the page is served with, beside its content type.
pub const HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-cache"),
];
