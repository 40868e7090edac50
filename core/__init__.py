"""The small core every room may use: settings and the injectable clock."""
