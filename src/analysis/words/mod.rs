//! Findings put into words, decided once (`statements`) and rendered for the terminal (`text`) and the one-line brief (`brief`); the report renders the same statements in Markdown.

pub mod brief;
pub mod statements;
pub mod text;
