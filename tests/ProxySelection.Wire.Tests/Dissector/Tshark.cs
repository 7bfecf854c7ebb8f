using System.ComponentModel;
using System.Diagnostics;

namespace ProxySelection.Wire.Tests.Dissector;

/// <summary>Runs the installed tshark with the MP_PROXY dissector loaded. A missing tshark fails the test.</summary>
internal static class Tshark
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    /// <summary>One dictionary per packet: field name to its value(s), comma-joined, "" when absent.</summary>
    public static IReadOnlyList<IReadOnlyDictionary<string, string>> Fields(string pcap, IReadOnlyList<string> fields)
    {
        var args = new List<string> { "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=," };
        foreach (var field in fields)
        {
            args.Add("-e");
            args.Add(field);
        }

        string output = Run(pcap, args);
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => line.Split('\t'))
            .Select(cells => (IReadOnlyDictionary<string, string>)fields
                .Select((name, i) => (name, value: i < cells.Length ? cells[i] : ""))
                .ToDictionary(p => p.name, p => p.value, StringComparer.Ordinal))
            .ToList();
    }

    /// <summary>The packet details, where a Lua error in a dissector would show as "Lua Error".</summary>
    public static string Verbose(string pcap) => Run(pcap, ["-V"]);

    private static string Run(string pcap, IEnumerable<string> extra)
    {
        var psi = new ProcessStartInfo("tshark")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[] { "-n", "-r", pcap, "-X", "lua_script:" + SpecText.DissectorPath() }.Concat(extra))
        {
            psi.ArgumentList.Add(arg);
        }

        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new InvalidOperationException("tshark did not start");
        }
        catch (Win32Exception e)
        {
            Assert.Fail("tshark is not installed (apt-get install -y tshark): " + e.Message);
            throw;
        }

        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(Timeout))
            {
                process.Kill(entireProcessTree: true);
                Assert.Fail($"tshark did not finish within {Timeout}");
            }

            if (!Task.WaitAll([stdout, stderr], Timeout))
            {
                Assert.Fail("tshark's output did not close");
            }

            // tshark warns on stderr when run as root; anything about Lua is the dissector failing.
            Assert.That(stderr.Result, Does.Not.Contain("Lua").IgnoreCase.And.Not.Contain("mp_proxy.lua"), "tshark stderr");
            Assert.That(process.ExitCode, Is.Zero, "tshark exit code; stderr: " + stderr.Result);
            return stdout.Result;
        }
    }
}
