"""Real local HTTP servers standing in for upstream APIs (GitHub-shaped) and their OAuth."""
