; Inno Setup 6 script: CallPath installer for Windows (64-bit).
;
; Build the one-folder bundle first (packaging/README.md), then, from the repository root:
;     iscc /DAppVersion=0.1.0 packaging\windows\callpath.iss
; Output: dist\callpath-<version>-setup.exe
;
; Installs for the current user by default (no administrator rights, into
; %LOCALAPPDATA%\Programs\CallPath); the first page offers "install for all users" instead,
; and /ALLUSERS or /CURRENTUSER choose on the command line. Paths below are relative to this
; file's folder (Inno Setup's default SourceDir).

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "CallPath"
#define BundleDir "..\..\dist\callpath"

[Setup]
; The AppId identifies the installation for upgrades and the uninstaller: never change it.
AppId={{0E35751D-BA81-4D21-AFD2-854168B304D5}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=The CallPath developers
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog commandline
UsePreviousPrivileges=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
OutputDir=..\..\dist
OutputBaseFilename=callpath-{#AppVersion}-setup
SetupIconFile=..\..\assets\icons\callpath.ico
UninstallDisplayIcon={app}\callpath-gui.exe
UninstallDisplayName={#AppName}
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
; The command line tool is in the folder too; users who want it on PATH add the folder.
ChangesEnvironment=no

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"
Name: "russian"; MessagesFile: "compiler:Languages\Russian.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
; The whole PyInstaller folder: callpath.exe, callpath-gui.exe and _internal\ (Python, Qt,
; FFmpeg, assets). A portable.txt is never installed: portable mode is for copies of the folder.
Source: "{#BundleDir}\*"; DestDir: "{app}"; Excludes: "\portable.txt,\data\*"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\callpath-gui.exe"; Comment: "Find the network path that restores voice and video calls"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\callpath-gui.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\callpath-gui.exe"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

; Settings and run history live in the user's data folder (%LOCALAPPDATA%\callpath) and are
; kept on uninstall, like the reports users saved themselves.
