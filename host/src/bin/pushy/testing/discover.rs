//! Test discovery: `test_*.py` and `*_test.py` under the given paths.

use std::path::{Path, PathBuf};

fn is_test_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    name.ends_with(".py") && (name.starts_with("test_") || name.ends_with("_test.py"))
}

/// Test files under `paths` (files are taken as given), sorted, without
/// hidden directories and `__pycache__`.
pub fn discover(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for path in paths {
        if path.is_file() {
            found.push(path.clone());
            continue;
        }
        let mut pending = vec![path.clone()];
        while let Some(dir) = pending.pop() {
            let named = |e: std::io::Error| {
                std::io::Error::new(e.kind(), format!("{}: {e}", dir.display()))
            };
            for entry in std::fs::read_dir(&dir).map_err(named)? {
                let entry = entry?;
                let path = entry.path();
                let name = entry.file_name();
                let hidden = name.to_string_lossy().starts_with('.') || name == "__pycache__";
                if entry.file_type()?.is_dir() {
                    if !hidden {
                        pending.push(path);
                    }
                } else if is_test_file(&path) {
                    found.push(path);
                }
            }
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_both_naming_styles_and_skips_hidden_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for file in [
            "test_a.py",
            "b_test.py",
            "helper.py",
            "sub/test_c.py",
            ".hidden/test_d.py",
            "test_e.txt",
        ] {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        let names: Vec<String> = discover(&[root.to_owned()])
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["b_test.py", "sub/test_c.py", "test_a.py"]);
    }
}
