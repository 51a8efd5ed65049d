; Pictor Worker for Windows: a per-user install (no admin prompt) of an embedded CPython (64- or 32-bit), the
; Worker App's packages, a Start Menu shortcut and an optional "start with Windows" entry.
; installer/build.py fills the @TOKENS@, then pynsist fills its template fields and runs makensis.
; Silent use: Setup.exe /S [/NOAUTOSTART] [/D=folder]; uninstall.exe /S [/PURGE] (PURGE also
; deletes the settings, pairing and cache that otherwise survive uninstalls and upgrades).

!define PRODUCT_NAME "[[ib.appname]]"
!define PRODUCT_VERSION "[[ib.version]]"
!define PRODUCT_ICON "[[icon]]"
!define APP_ID "PictorWorker"
!define UNINST_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\${APP_ID}"
!define RUN_KEY "Software\Microsoft\Windows\CurrentVersion\Run"
; platformdirs' config and data folder for the app (tray_client/config.py): never in $INSTDIR.
!define USER_DATA_DIR "$LOCALAPPDATA\@USER_DATA_DIRNAME@"
[% for scname, sc in ib.shortcuts.items() %]
!define SHORTCUT_NAME "[[scname]]"
!define APP_EXE "[[ sc['target'] ]]"
!define APP_ARGS '[[ sc['parameters'] ]]'
[% endfor %]

; amd64-unicode for the 64-bit build: a 32-bit stub under a 64-bit-only Windows (or wine64) exits 0
; and does nothing; x86-unicode for the 32-bit one (build.py ARCHES).
Target @NSIS_TARGET@
ManifestDPIAware true
SetCompressor /SOLID lzma
RequestExecutionLevel user

Name "${PRODUCT_NAME}"
OutFile "[[ib.installer_name]]"
InstallDir "$LOCALAPPDATA\Programs\${APP_ID}"
; An upgrade goes where the previous version is, so the shortcut and the Run entry stay valid.
InstallDirRegKey HKCU "${UNINST_KEY}" "InstallLocation"
ShowInstDetails show
ShowUninstDetails show
BrandingText "${PRODUCT_NAME} ${PRODUCT_VERSION}"

VIProductVersion "@VERSION_QUAD@"
VIAddVersionKey "ProductName" "${PRODUCT_NAME}"
VIAddVersionKey "ProductVersion" "${PRODUCT_VERSION}"
VIAddVersionKey "FileVersion" "${PRODUCT_VERSION}"
VIAddVersionKey "FileDescription" "${PRODUCT_NAME} ${PRODUCT_VERSION} setup"
VIAddVersionKey "CompanyName" "@PUBLISHER@"
VIAddVersionKey "LegalCopyright" "@PUBLISHER@"

!include "MUI2.nsh"
!include "FileFunc.nsh"
!include "LogicLib.nsh"
!include "Sections.nsh"

!define MUI_ICON "${PRODUCT_ICON}"
!define MUI_UNICON "${PRODUCT_ICON}"
!define MUI_ABORTWARNING
!define MUI_WELCOMEPAGE_TEXT "This installs ${PRODUCT_NAME} ${PRODUCT_VERSION} for your Windows account only (no administrator rights needed).$\r$\n$\r$\nWhen it starts, type the pairing code shown on the portal's New Worker page.$\r$\n$\r$\nYour pairing and settings are kept when you upgrade."
!define MUI_COMPONENTSPAGE_SMALLDESC
!define MUI_FINISHPAGE_RUN
!define MUI_FINISHPAGE_RUN_TEXT "Start ${PRODUCT_NAME} now and pair it"
!define MUI_FINISHPAGE_RUN_FUNCTION LaunchApp

!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH

!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_COMPONENTS
!insertmacro MUI_UNPAGE_INSTFILES

!insertmacro MUI_LANGUAGE "English"

; Files in use cannot be replaced or deleted: end the app running from this folder first. Uses the
; installed Python and psutil, so it is a no-op on a first install.
!macro STOP_RUNNING_APP un
Function ${un}StopRunningApp
  ${If} ${FileExists} "$INSTDIR\Python\python.exe"
  ${AndIf} ${FileExists} "$INSTDIR\stop_running.py"
    DetailPrint "Closing ${PRODUCT_NAME} if it is running..."
    nsExec::ExecToLog '"$INSTDIR\Python\python.exe" -I "$INSTDIR\stop_running.py" "$INSTDIR"'
    Pop $0
  ${EndIf}
FunctionEnd
!macroend
!insertmacro STOP_RUNNING_APP ""
!insertmacro STOP_RUNNING_APP "un."

Section "!${PRODUCT_NAME}" sec_app
  SectionIn RO
  Call StopRunningApp
  ; Replace the program files wholesale so modules dropped by a newer version do not linger.
  RMDir /r "$INSTDIR\Python"
  RMDir /r "$INSTDIR\pkgs"
  RMDir /r "$INSTDIR\bin"

  SetOutPath "$INSTDIR\pkgs"
  File /r "pkgs\*.*"
[% for destination, group in grouped_files %]
  SetOutPath "[[destination]]"
  [% for file in group %]
  File "[[file]]"
  [% endfor %]
[% endfor %]
[% for dir, destination in ib.install_dirs %]
  SetOutPath "[[ pjoin(destination, dir) ]]"
  File /r "[[dir]]\*.*"
[% endfor %]

  ; The portal this copy was downloaded from stamps its address after the installer's own bytes
  ; (tray_client/portal_stamp.py): copied beside Python, it prefills the first run's pairing form.
  nsExec::ExecToLog '"$INSTDIR\Python\python.exe" -I -m tray_client.portal_stamp "$EXEPATH" "$INSTDIR\Python\@STAMP_FILE@"'
  Pop $0

  ; The shortcut's working folder is the output path at the time it is made.
  SetOutPath "$INSTDIR"
  CreateShortCut "$SMPROGRAMS\${SHORTCUT_NAME}.lnk" "${APP_EXE}" '${APP_ARGS}' "$INSTDIR\${PRODUCT_ICON}"
[% if has_commands %]
  DetailPrint "Adding $INSTDIR\bin (the pictor-worker command) to your PATH..."
  nsExec::ExecToLog '"$INSTDIR\Python\python.exe" -Es "$INSTDIR\_system_path.py" add_user "$INSTDIR\bin"'
  Pop $0
[% endif %]

  WriteUninstaller "$INSTDIR\uninstall.exe"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayName" "${PRODUCT_NAME}"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayVersion" "${PRODUCT_VERSION}"
  WriteRegStr HKCU "${UNINST_KEY}" "Publisher" "@PUBLISHER@"
  WriteRegStr HKCU "${UNINST_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayIcon" "$INSTDIR\${PRODUCT_ICON}"
  WriteRegStr HKCU "${UNINST_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKCU "${UNINST_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoRepair" 1
  ${GetSize} "$INSTDIR" "/S=0K" $0 $1 $2
  IntFmt $0 "0x%08X" $0
  WriteRegDWORD HKCU "${UNINST_KEY}" "EstimatedSize" "$0"

  ; Off unless the next section, when ticked, turns it back on.
  DeleteRegValue HKCU "${RUN_KEY}" "${APP_ID}"
SectionEnd

Section "Start with Windows" sec_autostart
  WriteRegStr HKCU "${RUN_KEY}" "${APP_ID}" '"${APP_EXE}" ${APP_ARGS}'
SectionEnd

Section "un.${PRODUCT_NAME}" unsec_app
  SectionIn RO
  Call un.StopRunningApp
[% if has_commands %]
  nsExec::ExecToLog '"$INSTDIR\Python\python.exe" -Es "$INSTDIR\_system_path.py" remove "$INSTDIR\bin"'
  Pop $0
[% endif %]
  DeleteRegValue HKCU "${RUN_KEY}" "${APP_ID}"
  Delete "$SMPROGRAMS\${SHORTCUT_NAME}.lnk"
  RMDir /r "$INSTDIR\pkgs"
[% for file, destination in ib.install_files %]
  Delete "[[ pjoin(destination, file) ]]"
[% endfor %]
[% for dir, destination in ib.install_dirs %]
  RMDir /r "[[ pjoin(destination, dir) ]]"
[% endfor %]
  Delete "$INSTDIR\uninstall.exe"
  ; Not /r: if someone installed into a folder of their own, their other files stay.
  RMDir "$INSTDIR"
  DeleteRegKey HKCU "${UNINST_KEY}"
SectionEnd

Section /o "un.Also delete my pairing, settings and cache" unsec_data
  RMDir /r "${USER_DATA_DIR}"
SectionEnd

!insertmacro MUI_FUNCTION_DESCRIPTION_BEGIN
  !insertmacro MUI_DESCRIPTION_TEXT ${sec_app} "The Worker App and the Python it runs on (required)."
  !insertmacro MUI_DESCRIPTION_TEXT ${sec_autostart} "Start ${PRODUCT_NAME} in the tray when you sign in to Windows, so it earns while the PC is on."
!insertmacro MUI_FUNCTION_DESCRIPTION_END

!insertmacro MUI_UNFUNCTION_DESCRIPTION_BEGIN
  !insertmacro MUI_DESCRIPTION_TEXT ${unsec_app} "Remove the program files, the shortcut and the autostart entry."
  !insertmacro MUI_DESCRIPTION_TEXT ${unsec_data} "Also delete ${USER_DATA_DIR}: the pairing with the portal, settings and downloaded files. Leave it unticked to reinstall later without pairing again."
!insertmacro MUI_UNFUNCTION_DESCRIPTION_END

Function .onInit
  ; An upgrade keeps the previous choice about starting with Windows.
  ReadRegStr $0 HKCU "${UNINST_KEY}" "InstallLocation"
  ${If} $0 != ""
    ReadRegStr $1 HKCU "${RUN_KEY}" "${APP_ID}"
    ${If} $1 == ""
      !insertmacro UnselectSection ${sec_autostart}
    ${EndIf}
  ${EndIf}
  ${GetParameters} $2
  ClearErrors
  ${GetOptions} $2 "/NOAUTOSTART" $3
  ${IfNot} ${Errors}
    !insertmacro UnselectSection ${sec_autostart}
  ${EndIf}
FunctionEnd

Function un.onInit
  ${GetParameters} $0
  ClearErrors
  ${GetOptions} $0 "/PURGE" $1
  ${IfNot} ${Errors}
    !insertmacro SelectSection ${unsec_data}
  ${EndIf}
FunctionEnd

Function LaunchApp
  ; Exec, not ExecShell: the app runs as this user, exactly like the Start Menu shortcut.
  Exec '"${APP_EXE}" ${APP_ARGS}'
FunctionEnd
