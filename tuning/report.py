def write_report(project_dir):
    return []
