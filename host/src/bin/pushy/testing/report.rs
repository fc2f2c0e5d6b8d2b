//! Results, the summary line, and JUnit XML.

use std::fmt::Write;
use std::path::PathBuf;

use super::FileReport;

/// How one test ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It passed.
    Passed,
    /// An assertion failed.
    Failed,
    /// It raised something other than an assertion.
    Error,
    /// It was skipped (`unittest.skip`, `SkipTest`).
    Skipped,
    /// It ran past the time limit.
    TimedOut,
    /// It exhausted the memory limit.
    OutOfMemory,
}

impl Outcome {
    /// Whether this outcome fails the run.
    pub fn is_failure(self) -> bool {
        !matches!(self, Outcome::Passed | Outcome::Skipped)
    }

    /// A short word for reports.
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Error => "error",
            Outcome::Skipped => "skipped",
            Outcome::TimedOut => "timed out",
            Outcome::OutOfMemory => "out of memory",
        }
    }
}

/// One test's result.
#[derive(Clone, Debug)]
pub struct TestResult {
    /// The test file.
    pub file: PathBuf,
    /// `Class.method`, `function`, or `<script>` / `<module>`.
    pub name: String,
    /// How it ended.
    pub outcome: Outcome,
    /// One line: the assertion with compared values, the exception, the skip reason.
    pub message: String,
    /// The remote traceback.
    pub traceback: String,
    /// What the test printed.
    pub stdout: String,
    /// What the test printed on stderr.
    pub stderr: String,
    /// Time inside the sandbox.
    pub seconds: f64,
}

/// Counts over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Tests that passed.
    pub passed: usize,
    /// Assertion failures.
    pub failed: usize,
    /// Errors.
    pub errors: usize,
    /// Skipped tests.
    pub skipped: usize,
    /// Tests past the time limit.
    pub timed_out: usize,
    /// Tests past the memory limit.
    pub out_of_memory: usize,
    /// Files that never ran (`--fail-fast` stopped the run first).
    pub files_not_run: usize,
    /// Selected tests of files that did run that `--fail-fast` kept from running.
    pub tests_not_run: usize,
    /// Tests selected: run, or kept from running by `--fail-fast`.
    pub selected: usize,
    /// Tests collected before `-k` selected (files that never ran not counted).
    pub collected: usize,
}

impl Summary {
    /// Counts the results of `reports`.
    pub fn of(reports: &[FileReport]) -> Summary {
        let mut summary = Summary::default();
        for report in reports {
            if !report.ran {
                summary.files_not_run += 1;
            }
            summary.tests_not_run += report.not_run;
            summary.selected += report.results.len() + report.not_run;
            summary.collected += report.collected;
        }
        for result in reports.iter().flat_map(|r| &r.results) {
            match result.outcome {
                Outcome::Passed => summary.passed += 1,
                Outcome::Failed => summary.failed += 1,
                Outcome::Error => summary.errors += 1,
                Outcome::Skipped => summary.skipped += 1,
                Outcome::TimedOut => summary.timed_out += 1,
                Outcome::OutOfMemory => summary.out_of_memory += 1,
            }
        }
        summary
    }

    /// Everything that fails the run.
    pub fn failing(&self) -> usize {
        self.failed + self.errors + self.timed_out + self.out_of_memory
    }

    /// What `--fail-fast` kept from running, when it did: `N files and N
    /// tests not run` (only the parts that are not zero).
    pub fn not_run_line(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.files_not_run > 0 {
            parts.push(plural(self.files_not_run, "file"));
        }
        if self.tests_not_run > 0 {
            parts.push(plural(self.tests_not_run, "test"));
        }
        (!parts.is_empty()).then(|| format!("{} not run", parts.join(" and ")))
    }

    /// `N passed, N failed` (`, N skipped` when any): the line CI reads.
    pub fn line(&self) -> String {
        let mut line = format!("{} passed, {} failed", self.passed, self.failing());
        if self.skipped > 0 {
            let _ = write!(line, ", {} skipped", self.skipped);
        }
        line
    }
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 cannot carry most control characters at all.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML, one `<testsuite>` per file, as CI systems read it.
pub fn junit_xml(reports: &[FileReport]) -> String {
    let total = Summary::of(reports);
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"pushy test\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\">",
        total.passed + total.failing() + total.skipped,
        total.failed,
        total.errors + total.timed_out + total.out_of_memory,
        total.skipped
    );
    for report in reports.iter().filter(|r| r.ran) {
        let summary = Summary::of(std::slice::from_ref(report));
        let seconds: f64 = report.results.iter().map(|r| r.seconds).sum();
        let file = report.file.display().to_string();
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{seconds:.3}\">",
            escape(&file),
            report.results.len(),
            summary.failed,
            summary.errors + summary.timed_out + summary.out_of_memory,
            summary.skipped
        );
        for result in &report.results {
            let _ = write!(
                xml,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                escape(&file),
                escape(&result.name),
                result.seconds
            );
            let body = match result.outcome {
                Outcome::Passed => String::new(),
                Outcome::Skipped => {
                    format!("      <skipped message=\"{}\"/>\n", escape(&result.message))
                }
                Outcome::Failed => format!(
                    "      <failure message=\"{}\">{}</failure>\n",
                    escape(&result.message),
                    escape(&result.traceback)
                ),
                other => format!(
                    "      <error type=\"{}\" message=\"{}\">{}</error>\n",
                    other.word(),
                    escape(&result.message),
                    escape(&result.traceback)
                ),
            };
            let output = if result.outcome.is_failure()
                && !(result.stdout.is_empty() && result.stderr.is_empty())
            {
                format!(
                    "      <system-out>{}</system-out>\n      <system-err>{}</system-err>\n",
                    escape(&result.stdout),
                    escape(&result.stderr)
                )
            } else {
                String::new()
            };
            if body.is_empty() && output.is_empty() {
                xml.push_str("/>\n");
            } else {
                let _ = write!(xml, ">\n{body}{output}    </testcase>\n");
            }
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_and_escaping() {
        let summary = Summary {
            passed: 3,
            failed: 1,
            errors: 1,
            skipped: 2,
            timed_out: 1,
            ..Default::default()
        };
        assert_eq!(summary.line(), "3 passed, 3 failed, 2 skipped");
        assert_eq!(
            Summary {
                passed: 1,
                ..Default::default()
            }
            .line(),
            "1 passed, 0 failed"
        );
        assert_eq!(escape("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;?");
        assert_eq!(summary.not_run_line(), None);
        let stopped = Summary {
            files_not_run: 3,
            tests_not_run: 1,
            ..Default::default()
        };
        assert_eq!(
            stopped.not_run_line().as_deref(),
            Some("3 files and 1 test not run")
        );
    }
}
