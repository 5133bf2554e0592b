"""``sparsekit plan``: which layers go 2:4, chosen by accuracy and speed together."""
