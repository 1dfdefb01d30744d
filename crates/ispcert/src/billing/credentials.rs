//! Billing account credentials, kept out of every log line, error and URL.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// An ispmanager billing login: the account email and its password.
///
/// `Debug` and `Display` print the email's domain only and never the password; the password is
/// exposed in exactly one place, the form body of a request ([`Credentials::authinfo`]).
#[derive(Clone)]
pub struct Credentials {
    email: String,
    password: SecretString,
}

impl Credentials {
    pub fn new(email: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials { email: email.into(), password: SecretString::from(password.into()) }
    }

    pub fn email(&self) -> &str {
        &self.email
    }

    /// The `authinfo` value. Only the request body builder calls this.
    pub(crate) fn authinfo(&self) -> String {
        format!("{}:{}", self.email, self.password.expose_secret())
    }

    /// Whether two logins are the same account with the same password, without printing either.
    pub fn same_as(&self, other: &Credentials) -> bool {
        self.email == other.email && self.password.expose_secret() == other.password.expose_secret()
    }

    /// Removes the password (and the `authinfo` pair) from text that came back from elsewhere,
    /// such as a billing message or a transport error, before it is stored or shown.
    pub fn scrub(&self, text: &str) -> String {
        let password = self.password.expose_secret();
        let mut out = text.replace(&self.authinfo(), "[authinfo redacted]");
        if password.len() >= 3 {
            // Also as it travels in a form body, in case a proxy echoes the request.
            let encoded: String = url::form_urlencoded::byte_serialize(password.as_bytes()).collect();
            for form in [password.to_string(), encoded] {
                out = out.replace(&form, "[redacted]");
            }
        }
        out
    }

    /// The account as shown to people: `a…@example.com`.
    pub fn redacted_email(&self) -> String {
        match self.email.split_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}…@{domain}")
            }
            None => "…".to_string(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("email", &self.redacted_email()).field("password", &"[redacted]").finish()
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (password redacted)", self.redacted_email())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_password() {
        let c = Credentials::new("alice@example.com", "hunter2-secret");
        for shown in [format!("{c:?}"), format!("{c}"), format!("{c:#?}")] {
            assert!(!shown.contains("hunter2-secret"), "{shown}");
            assert!(!shown.contains("alice@"), "{shown}");
        }
    }

    #[test]
    fn scrub_removes_password_and_authinfo() {
        let c = Credentials::new("alice@example.com", "hunter2-secret");
        let text = "bad authinfo=alice@example.com:hunter2-secret or hunter2-secret";
        let out = c.scrub(text);
        assert!(!out.contains("hunter2-secret"), "{out}");
        let spaced = Credentials::new("a@example.com", "p&ss w:rd");
        assert_eq!(
            spaced.scrub("authinfo=a%40example.com%3Ap%26ss+w%3Ard and p%26ss+w%3Ard"),
            "authinfo=a%40example.com%3A[redacted] and [redacted]"
        );
    }
}
