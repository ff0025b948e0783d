def write_reports(run_dir):
    return {"markdown": "TODO"}
