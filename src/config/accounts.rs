//! Qwen accounts as configured: `ACCOUNTS` (email:password[|proxy]), `QWEN_COOKIES`, `QWEN_AUTH_TOKEN`.

use super::{ConfigError, ProxyUrl, Secret, Vars};

/// One configured Qwen web account.
#[derive(Clone, Debug)]
pub struct AccountSpec {
    /// The email for sign-in accounts; `account_1`, `account_2`, … for token and cookie accounts.
    pub id: String,
    pub credential: AccountCredential,
    /// Outbound proxy for this account only.
    pub proxy: Option<ProxyUrl>,
}

#[derive(Clone, Debug)]
pub enum AccountCredential {
    /// Signed in at start with `POST /api/v1/auths/signin`.
    Password { email: String, password: Secret },
    /// A JWT, plus the browser cookies that came with it (sent along, `token=` replaced).
    Token {
        token: Secret,
        cookies: Option<Secret>,
    },
    /// A Tongyi browser cookie and its XSRF token (config/tongyi.rs).
    Tongyi { cookie: Secret, xsrf: Secret },
}

pub fn from_vars(src: &dyn Vars) -> Result<Vec<AccountSpec>, ConfigError> {
    let mut out = Vec::new();
    if let Some(raw) = src.get("ACCOUNTS") {
        for entry in super::parse::list(&raw) {
            out.push(password_account(&entry)?);
        }
    }
    let mut n = 0;
    let mut next_id = || {
        n += 1;
        format!("account_{n}")
    };
    if let Some(raw) = src.get("QWEN_COOKIES") {
        for cookie in super::parse::list(&raw) {
            let Some(token) = cookie_token(&cookie) else {
                return Err(ConfigError::secret(
                    "QWEN_COOKIES",
                    "comma-separated browser cookie strings, each holding token=<jwt>",
                ));
            };
            out.push(AccountSpec {
                id: next_id(),
                credential: AccountCredential::Token {
                    token: Secret::new(token),
                    cookies: Some(Secret::new(cookie)),
                },
                proxy: None,
            });
        }
    }
    if let Some(raw) = src.get("QWEN_AUTH_TOKEN") {
        let token = raw.strip_prefix("Bearer ").unwrap_or(&raw).trim();
        if token.contains([' ', ';', ',']) {
            return Err(ConfigError::secret("QWEN_AUTH_TOKEN", "one bare JWT"));
        }
        out.push(AccountSpec {
            id: next_id(),
            credential: AccountCredential::Token {
                token: Secret::new(token),
                cookies: None,
            },
            proxy: None,
        });
    }
    Ok(out)
}

fn password_account(entry: &str) -> Result<AccountSpec, ConfigError> {
    const FORM: &str = "email:password pairs separated by commas, each optionally followed by \
                        |proxy (e.g. a@b.c:pw|socks5://127.0.0.1:1080)";
    let Some((email, rest)) = entry.split_once(':') else {
        return Err(ConfigError::secret("ACCOUNTS", FORM));
    };
    let email = email.trim();
    // A password may itself contain '|': only a suffix that looks like a proxy URL is split off.
    let (password, proxy) = match rest.rsplit_once('|') {
        Some((pw, proxy)) if proxy.contains("://") => {
            (pw, Some(ProxyUrl::new(validate_proxy("ACCOUNTS", proxy)?)))
        }
        _ => (rest, None),
    };
    if email.is_empty() || !email.contains('@') || password.is_empty() {
        return Err(ConfigError::secret("ACCOUNTS", FORM));
    }
    if holds_another_account(password) {
        // Refused rather than guessed: `a@b.c:pw1;d@e.f:pw2` would otherwise be one account
        // whose password is the rest of the line, and the second one would vanish.
        return Err(ConfigError::secret(
            "ACCOUNTS",
            format!(
                "accounts separated by commas (a@b.c:pw1,d@e.f:pw2): the password of {email} \
                 holds what looks like another email:password pair after a `;`, a space or a \
                 `|`; use a comma between accounts"
            ),
        ));
    }
    Ok(AccountSpec {
        id: email.to_owned(),
        credential: AccountCredential::Password {
            email: email.to_owned(),
            password: Secret::new(password),
        },
        proxy,
    })
}

/// Whether a password holds, after a `;`, white space or `|`, something shaped like
/// `email:password` (the usual mistakes when separating accounts).
fn holds_another_account(password: &str) -> bool {
    password.split([';', '|', ' ', '\t']).skip(1).any(|piece| {
        piece.split_once(':').is_some_and(|(email, pw)| {
            email.split_once('@').is_some_and(|(user, host)| {
                !user.is_empty() && host.contains('.') && !host.contains('/')
            }) && !pw.is_empty()
        })
    })
}

/// The `token` cookie's value in a `Cookie` header string.
pub fn cookie_token(cookie: &str) -> Option<String> {
    cookie.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name.trim() == "token" && !value.trim().is_empty()).then(|| value.trim().to_owned())
    })
}

pub fn validate_proxy(var: &'static str, proxy: &str) -> Result<String, ConfigError> {
    let proxy = proxy.trim();
    let ok = ["http://", "https://", "socks5://", "socks5h://"]
        .iter()
        .any(|s| proxy.starts_with(s))
        && reqwest::Proxy::all(proxy).is_ok();
    // Proxy URLs may carry a user and password, so the value is not echoed.
    if ok {
        Ok(proxy.to_owned())
    } else {
        Err(ConfigError::secret(
            var,
            "a proxy URL with one of the schemes http://, https://, socks5:// or socks5h:// \
             (e.g. socks5h://127.0.0.1:1080 or http://user:pass@host:8080)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(pairs: &[(&str, &str)]) -> impl Vars + use<> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name: &str| {
            owned
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn every_kind_of_account_in_order() {
        let got = from_vars(&src(&[
            (
                "ACCOUNTS",
                "a@x.io:p|w:1|socks5://127.0.0.1:1080, b@x.io:pw",
            ),
            ("QWEN_COOKIES", "cna=1; token=jwt1; x=y,token=jwt2"),
            ("QWEN_AUTH_TOKEN", "Bearer jwt3"),
        ]))
        .unwrap();
        let ids: Vec<&str> = got.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(
            ids,
            ["a@x.io", "b@x.io", "account_1", "account_2", "account_3"]
        );
        assert_eq!(
            got[0].proxy.as_ref().map(ProxyUrl::as_str),
            Some("socks5://127.0.0.1:1080")
        );
        let AccountCredential::Password { password, .. } = &got[0].credential else {
            panic!()
        };
        assert_eq!(password.expose(), "p|w:1");
        let AccountCredential::Token { token, cookies } = &got[2].credential else {
            panic!()
        };
        assert_eq!(token.expose(), "jwt1");
        assert_eq!(cookies.as_ref().unwrap().expose(), "cna=1; token=jwt1; x=y");
        let AccountCredential::Token { token, .. } = &got[4].credential else {
            panic!()
        };
        assert_eq!(token.expose(), "jwt3");
    }

    #[test]
    fn malformed_accounts_are_refused_without_echoing_them() {
        let err = from_vars(&src(&[("ACCOUNTS", "nopassword")])).unwrap_err();
        assert_eq!(err.var, "ACCOUNTS");
        let err = from_vars(&src(&[("QWEN_COOKIES", "session=secret123")])).unwrap_err();
        assert!(!err.to_string().contains("secret123"));
    }

    #[test]
    fn accounts_separated_by_semicolons_or_spaces_are_refused_with_the_fix() {
        for raw in [
            "a@x.io:pass-a;b@x.io:pass-b",
            "a@x.io:pass-a; b@x.io:pass-b",
            "a@x.io:pass-a b@x.io:pass-b",
            "a@x.io:pass-a|b@x.io:pass-b",
        ] {
            let err = from_vars(&src(&[("ACCOUNTS", raw)])).unwrap_err();
            let text = err.to_string();
            assert_eq!(err.var, "ACCOUNTS");
            assert!(text.contains("comma"), "{text}");
            assert!(!text.contains("pass-"), "{text}");
        }
        // A password may hold any of these characters as long as no account follows.
        let got = from_vars(&src(&[("ACCOUNTS", "a@x.io:p;w@rd:1|x, b@x.io:a b")])).unwrap();
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn the_proxy_error_lists_every_accepted_scheme() {
        let err = validate_proxy("PROXY_URL", "ftp://h:1")
            .unwrap_err()
            .to_string();
        for scheme in ["http://", "https://", "socks5://", "socks5h://"] {
            assert!(err.contains(scheme), "{err}");
        }
    }
}
