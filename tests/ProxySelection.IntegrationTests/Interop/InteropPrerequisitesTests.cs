using System.Diagnostics;

namespace ProxySelection.IntegrationTests.Interop;

/// <summary>
/// Issue 15: interop on a machine without one of its tools says so in one line before it builds anything, instead of
/// sixteen cells failing on "exec of ethtool failed". ethtool is hidden in a private mount namespace of the run only:
/// /usr/sbin there is a tmpfs of links to everything in the real one but ethtool.
/// </summary>
[TestFixture]
public sealed class InteropPrerequisitesTests
{
    private const string HideEthtool = """
        set -e
        orig=$(mktemp -d)
        mount --bind /usr/sbin "$orig"
        mount -t tmpfs tmpfs /usr/sbin
        for f in "$orig"/*; do [ "${f##*/}" = ethtool ] || ln -s "$f" /usr/sbin/; done
        ! command -v ethtool
        exec "$@"
        """;

    [Test]
    public async Task Interop_NoInstallWithoutEthtool_OneLineNamingIt_Exit4_NoCellRun()
    {
        Assert.That(File.Exists("/usr/sbin/ethtool"), Is.True, "the test hides /usr/sbin/ethtool, where Debian installs it");
        var dotnet = Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : "dotnet";
        var start = new ProcessStartInfo("unshare", ["--mount", "--propagation", "private", "sh", "-c", HideEthtool, "sh",
            dotnet, Path.Combine(AppContext.BaseDirectory, "proxysel-lab.dll"), "interop", "--no-install", "--cell", "mptcp-tcp-3-explicit-first"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var process = Process.Start(start)!;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        try
        {
            var stdout = process.StandardOutput.ReadToEndAsync(cts.Token);
            var stderr = process.StandardError.ReadToEndAsync(cts.Token);
            await process.WaitForExitAsync(cts.Token);
            var errorLines = (await stderr).Split('\n', StringSplitOptions.RemoveEmptyEntries);
            var output = await stdout;

            Assert.Multiple(() =>
            {
                Assert.That(process.ExitCode, Is.EqualTo(4), $"stdout: {output}\nstderr: {string.Join('\n', errorLines)}");
                Assert.That(errorLines, Has.Length.EqualTo(1), string.Join('\n', errorLines));
                Assert.That(errorLines.FirstOrDefault(), Does.StartWith("proxysel-lab interop: missing ethtool (package ethtool)"));
                Assert.That(output, Does.Not.Contain("BAD").And.Not.Contain("| ok"), "no cell ran");
            });
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
    }
}
