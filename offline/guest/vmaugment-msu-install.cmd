@echo off
rem Installed into a Windows image by every vmaugment-offline bundle built
rem from a plan of .msu files (docs/offline.rst, "Windows updates at the
rem next boot").  The bundle stages the .msu files and arms this script
rem through HKLM\SYSTEM\Setup (CmdLine, SetupType 2): Windows runs it once
rem at the next boot, as SYSTEM, before anyone can log on, and waits for
rem it.  It installs each staged file in name order with wusa.exe, writes
rem each KB's exit code into a result file that the next
rem "vmaugment-offline inspect" reads, and disarms itself first, so that a
rem failure cannot hold every later boot.
rem
rem SPDX-License-Identifier: GPL-2.0-or-later
setlocal EnableExtensions EnableDelayedExpansion

rem Its own directory, wherever the bundle put it (no trailing "\").
set "DIR=%~dp0"
set "DIR=%DIR:~0,-1%"
set "RESULT=%DIR%\msu-install.result"

reg add HKLM\SYSTEM\Setup /v SetupType /t REG_DWORD /d 0 /f >nul
reg add HKLM\SYSTEM\Setup /v CmdLine /t REG_SZ /d "" /f >nul

rem The bundles this run answers for: their records, renamed once read so
rem that the next run does not answer for them again.
set "RECORDS="
for %%r in ("%DIR%\*.json") do (
    set "RECORDS=!RECORDS!%%~nxr;"
    move /y "%%r" "%%r.reported" >nul
)

> "%RESULT%.tmp" echo [msu-install]
>> "%RESULT%.tmp" echo time=%DATE% %TIME%
>> "%RESULT%.tmp" echo records=!RECORDS!

rem NNN-KBnnnnnnn.msu: NTFS lists names in order, so the plan's order.
for %%f in ("%DIR%\staged\*.msu") do (
    "%SystemRoot%\System32\wusa.exe" "%%f" /quiet /norestart
    set "CODE=!ERRORLEVEL!"
    set "NAME=%%~nf"
    >> "%RESULT%.tmp" echo !NAME:~4!=!CODE!
    del /q "%%f"
)

move /y "%RESULT%.tmp" "%RESULT%" >nul
endlocal
exit /b 0
