//! Problems found while loading or validating machine files, printed one per
//! line as `FILE: state 'NAME': message` (or `FILE:LINE:COL: message` for
//! YAML syntax) so editors and CI logs can point at them.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The file the problem is in, as the user named it (or resolved from it).
    pub file: String,
    /// The state the problem belongs to, when it belongs to one.
    pub state: Option<String>,
    /// 1-based line and column, for syntax errors.
    pub location: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, col)) = self.location {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": ")?;
        if let Some(state) = &self.state {
            write!(f, "state '{state}': ")?;
        }
        if self.severity == Severity::Warning {
            write!(f, "warning: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// An ordered list of problems.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn error(&mut self, file: &str, state: Option<&str>, message: impl Into<String>) {
        self.push(Severity::Error, file, state, message.into());
    }

    pub fn warn(&mut self, file: &str, state: Option<&str>, message: impl Into<String>) {
        self.push(Severity::Warning, file, state, message.into());
    }

    pub fn syntax(&mut self, file: &str, location: Option<(usize, usize)>, message: String) {
        self.items.push(Diagnostic {
            severity: Severity::Error,
            file: file.to_string(),
            state: None,
            location,
            message,
        });
    }

    fn push(&mut self, severity: Severity, file: &str, state: Option<&str>, message: String) {
        let d = Diagnostic {
            severity,
            file: file.to_string(),
            state: state.map(str::to_string),
            location: None,
            message,
        };
        if !self.items.contains(&d) {
            self.items.push(d);
        }
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.errors().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let mut d = Diagnostics::default();
        d.error("m.yml", Some("s"), "bad");
        d.warn("m.yml", Some("t"), "unreachable");
        d.syntax("m.yml", Some((3, 4)), "oops".into());
        d.error("m.yml", None, "plain");
        let lines: Vec<String> = d.items.iter().map(|x| x.to_string()).collect();
        assert_eq!(
            lines,
            vec![
                "m.yml: state 's': bad",
                "m.yml: state 't': warning: unreachable",
                "m.yml:3:4: oops",
                "m.yml: plain"
            ]
        );
        assert!(d.has_errors());
    }
}
