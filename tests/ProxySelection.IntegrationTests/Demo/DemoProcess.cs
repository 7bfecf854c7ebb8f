using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Demo;

/// <summary><c>dotnet proxysel-lab.dll demo</c> as a child process, its output collected as it comes.</summary>
internal sealed partial class DemoProcess : IDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly Lock _gate = new();

    private DemoProcess(Process process)
    {
        _process = process;
    }

    public int Pid => _process.Id;

    public string Output
    {
        get
        {
            lock (_gate)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>The namespace prefix the demo printed in its header (<c>ps…-pid-</c>).</summary>
    public string Prefix => PrefixPattern().Match(Output) is { Success: true } m ? m.Groups[1].Value : throw new InvalidOperationException($"no prefix in: {Output}");

    /// <summary>
    /// Starts the demo; <paramref name="wrapper"/> (ending in <c>dotnet</c>) runs it through another program, e.g. setpriv;
    /// <paramref name="directory"/> holds the lab tool (default: beside the tests).
    /// </summary>
    public static DemoProcess Start(string[]? wrapper = null, string[]? extra = null, string? directory = null)
    {
        string[] command = [.. wrapper ?? ["dotnet"], Path.Combine(directory ?? AppContext.BaseDirectory, "proxysel-lab.dll"), "demo", .. extra ?? []];
        var start = new ProcessStartInfo(command[0], command[1..])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        var process = new Process { StartInfo = start };
        var demo = new DemoProcess(process);
        process.OutputDataReceived += demo.Append;
        process.ErrorDataReceived += demo.Append;
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return demo;
    }

    public async Task WaitForOutputAsync(string text, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        while (!Output.Contains(text, StringComparison.Ordinal))
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"the demo exited before printing '{text}': {Output}");
            }

            await Task.Delay(50, cts.Token);
        }
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"the demo did not exit within {timeout.TotalSeconds:0} s; its output so far:\n{Output}");
        }

        return _process.ExitCode;
    }

    public void Interrupt() => LabNative.kill(_process.Id, LabNative.SigInt);

    /// <summary>The namespaces of <paramref name="prefix"/> that still exist.</summary>
    public static async Task<IReadOnlyList<string>> NamespacesLeftAsync(string prefix) =>
        [.. (await LabRun.ListNamespacesAsync().WaitAsync(TimeSpan.FromSeconds(20))).Where(n => n.StartsWith(prefix, StringComparison.Ordinal))];

    /// <summary>The root namespace's iptables rules (tables and chains with their rules, counters dropped).</summary>
    public static async Task<string> RootRulesAsync()
    {
        var result = await LabCommand.RunAsync("iptables-save", []).WaitAsync(TimeSpan.FromSeconds(20));
        return string.Join('\n', result.StdOut.Split('\n').Where(l => l.StartsWith('*') || l.StartsWith("-A", StringComparison.Ordinal)
            || l.StartsWith(':')).Select(l => CounterPattern().Replace(l, "")));
    }

    /// <summary>The pids of the proxies the demo started (from its "P1 pid N, P2 pid M" line).</summary>
    public IReadOnlyList<int> ProxyPids() =>
        [.. ProxyPidPattern().Matches(Output).Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture))];

    private void Append(object sender, DataReceivedEventArgs e)
    {
        if (e.Data is not null)
        {
            lock (_gate)
            {
                _output.AppendLine(e.Data);
            }
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(10_000);
        }

        _process.Dispose();
    }

    [GeneratedRegex(@"names starting with (ps[0-9a-f]{6}-[0-9]+-)")]
    private static partial Regex PrefixPattern();

    [GeneratedRegex(@"\[[0-9]+:[0-9]+\]")]
    private static partial Regex CounterPattern();

    [GeneratedRegex(@"(?:P[12]|CPE|AGG) pid ([0-9]+)")]
    private static partial Regex ProxyPidPattern();
}
