"""The desktop UI (Tk window, pystray tray icon, first-run pairing): the only package importing UI toolkits."""


def main(config_path=None, data_dir=None) -> int:
    """Run the desktop app until Quit; returns the process exit code."""
    from .app import main as run_app  # Tk and pystray load only when the UI really starts
    return run_app(config_path=config_path, data_dir=data_dir)
