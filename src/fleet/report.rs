pub fn write(_a: &super::query::Answers, dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> { Ok(dir.to_path_buf()) }
