"""End the Worker App processes that run from one install folder, so an upgrade or uninstall can replace it.

The installer runs this with the installed Python (`python.exe -I stop_running.py INSTALL_DIR`) before it
touches any file: Windows refuses to overwrite or delete files a running program holds open. Processes
the app started (a Blender render) end too, or they would keep the GPU busy for nobody. Plain ctypes on
the Win32 API: psutil's way of reading a process's path fails under wine, and this must work with the
Python of any older version it replaces.
"""

import ctypes
import os
import sys
from ctypes import wintypes

TH32CS_SNAPPROCESS = 0x2
PROCESS_TERMINATE = 0x1
SYNCHRONIZE = 0x100000
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
INVALID_HANDLE_VALUE = ctypes.c_void_p(-1).value


class PROCESSENTRY32W(ctypes.Structure):
    _fields_ = [("dwSize", wintypes.DWORD), ("cntUsage", wintypes.DWORD), ("th32ProcessID", wintypes.DWORD),
                ("th32DefaultHeapID", ctypes.c_size_t), ("th32ModuleID", wintypes.DWORD),
                ("cntThreads", wintypes.DWORD), ("th32ParentProcessID", wintypes.DWORD),
                ("pcPriClassBase", wintypes.LONG), ("dwFlags", wintypes.DWORD), ("szExeFile", wintypes.WCHAR * 260)]


def _kernel32():
    k = ctypes.WinDLL("kernel32", use_last_error=True)
    k.CreateToolhelp32Snapshot.argtypes = [wintypes.DWORD, wintypes.DWORD]
    k.CreateToolhelp32Snapshot.restype = wintypes.HANDLE
    k.Process32FirstW.argtypes = k.Process32NextW.argtypes = [wintypes.HANDLE, ctypes.POINTER(PROCESSENTRY32W)]
    k.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
    k.OpenProcess.restype = wintypes.HANDLE
    k.QueryFullProcessImageNameW.argtypes = [wintypes.HANDLE, wintypes.DWORD, wintypes.LPWSTR,
                                             ctypes.POINTER(wintypes.DWORD)]
    k.TerminateProcess.argtypes = [wintypes.HANDLE, wintypes.UINT]
    k.WaitForSingleObject.argtypes = [wintypes.HANDLE, wintypes.DWORD]
    k.CloseHandle.argtypes = [wintypes.HANDLE]
    return k


def processes(k) -> dict[int, int]:
    """pid -> parent pid of every process."""
    snapshot = k.CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0)
    if snapshot in (None, INVALID_HANDLE_VALUE):
        return {}
    found = {}
    entry = PROCESSENTRY32W()
    entry.dwSize = ctypes.sizeof(PROCESSENTRY32W)
    try:
        ok = k.Process32FirstW(snapshot, ctypes.byref(entry))
        while ok:
            found[entry.th32ProcessID] = entry.th32ParentProcessID
            ok = k.Process32NextW(snapshot, ctypes.byref(entry))
    finally:
        k.CloseHandle(snapshot)
    return found


def image_path(k, handle) -> str | None:
    buffer = ctypes.create_unicode_buffer(32768)
    size = wintypes.DWORD(len(buffer))
    return buffer.value if k.QueryFullProcessImageNameW(handle, 0, buffer, ctypes.byref(size)) else None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: stop_running.py INSTALL_DIR", file=sys.stderr)
        return 2
    if sys.platform != "win32":
        return 0
    folder = os.path.normcase(os.path.abspath(argv[1])).rstrip("\\/") + os.sep
    k = _kernel32()
    parents = processes(k)
    me = os.getpid()
    handles = {}
    for pid in parents:
        if pid in (0, me):
            continue
        handle = k.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_TERMINATE | SYNCHRONIZE, False, pid)
        if handle:
            handles[pid] = handle
    try:
        ours = {pid for pid, handle in handles.items()
                if (path := image_path(k, handle)) and os.path.normcase(path).startswith(folder)}
        grew = True
        while grew:  # and everything they started, and so on
            children = {pid for pid, parent in parents.items() if parent in ours and pid != me} - ours
            grew = bool(children)
            ours |= children
        for pid in sorted(ours):
            if pid in handles:
                print(f"stopping {image_path(k, handles[pid])} (pid {pid})", flush=True)
                k.TerminateProcess(handles[pid], 1)
        for pid in ours:
            if pid in handles:
                k.WaitForSingleObject(handles[pid], 10_000)
    finally:
        for handle in handles.values():
            k.CloseHandle(handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
