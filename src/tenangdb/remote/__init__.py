"""Off-site copies: the rclone adapter."""
