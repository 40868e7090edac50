"""One router per 2030.5 resource family; handlers parse the path and paging, nothing else."""
