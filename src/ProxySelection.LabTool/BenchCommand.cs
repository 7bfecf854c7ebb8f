using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Reflection;
using ProxySelection.Bench;
using ProxySelection.Lab;
using ProxySelection.LabTool.Lab;
using ProxySelection.Relay;

namespace ProxySelection.LabTool;

/// <summary>
/// <c>proxysel-lab bench [--quick] [--rounds N] [--seconds S] [--json] [--out FILE] [--diagnose] [--only a,b]</c>: the lab
/// benchmark of issues 7 and 13 (needs root; builds its own namespaces; the table ends with a goals block for each).
/// Progress goes to stderr, the table to stdout, and with <c>--json</c> one JSON object as the last line. The hidden <c>bench relay</c> runs our relay as its own process so
/// the bench measures it like HAProxy and socat.
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var quick = new Option<bool>("--quick") { Description = "CI-sized run: 1 round, 2 s iperf3, 1 s wrk, 300 idle connections (about a minute)" };
        var rounds = new Option<int?>("--rounds") { Description = "Interleaved rounds per figure (median reported); default 3, quick 1" };
        var seconds = new Option<int?>("--seconds") { Description = "iperf3 seconds per run; default 8, quick 2" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object (ratios and raw figures) as the last line" };
        var output = new Option<FileInfo?>("--out") { Description = "Results file (JSON with the machine description and the table); default bench-<UTC time>.json" };
        var singlePath = new Option<bool>("--single-path") { Description = "Remove the client's MPTCP subflow endpoints: one subflow per MPTCP connection" };
        var sysctl = new Option<string[]>("--proxy-sysctl") { Description = "key=value set in the proxy namespace first (repeatable), e.g. net.ipv4.tcp_rmem=\"4096 131072 33554432\"" };
        var clientSysctl = new Option<string[]>("--client-sysctl") { Description = "key=value set in the client namespace first (repeatable)" };
        var diagnose = new Option<bool>("--diagnose") { Description = "Extra pass: strace -c of every relay during an unlimited run (its rate is not a figure)" };
        var only = new Option<string?>("--only") { Description = "Comma-separated subject names, e.g. direct,relay-tcp,haproxy" };
        var relayReadSize = new Option<int?>("--relay-read-size") { Description = "Bytes our relay subjects ask for per read (at least 65536)" };
        var phases = new Option<string?>("--phases") { Description = "Comma-separated phases to run: throughput,connections,idle (default all)" };
        var engineSet = new Option<string[]>("--engine-set") { Description = "Key=Value the engine (proxysel run) runs with (repeatable), e.g. Proxy:KernelSigning=true" };
        var noInstall = new Option<bool>("--no-install") { Description = "Do not install missing Debian packages; fail with their names instead" };
        var daemonPath = DaemonLocator.CreateOption();
        var command = new Command("bench", "Lab benchmark: throughput, relay CPU per GB, connection rate and idle memory of our relay against HAProxy, socat and the direct path")
        {
            quick, rounds, seconds, json, output, diagnose, only, singlePath, sysctl, clientSysctl, phases, relayReadSize, engineSet, noInstall, daemonPath,
        };
        command.Subcommands.Add(CreateRelay());
        command.SetAction(async (result, cancellationToken) =>
        {
            var stdout = result.InvocationConfiguration.Output;
            var stderr = result.InvocationConfiguration.Error;
            var options = result.GetValue(quick) ? BenchOptions.QuickDefaults() : new BenchOptions();
            options.Rounds = result.GetValue(rounds) ?? options.Rounds;
            options.Seconds = result.GetValue(seconds) ?? options.Seconds;
            options.Diagnose = result.GetValue(diagnose);
            options.SinglePath = result.GetValue(singlePath);
            options.ProxySysctls = ParseSysctls(result.GetValue(sysctl));
            options.ClientSysctls = ParseSysctls(result.GetValue(clientSysctl));
            options.Only = result.GetValue(only)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [];
            if (result.GetValue(phases) is string p)
            {
                options.Phases = p.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            }
            options.RelayReadSize = result.GetValue(relayReadSize);
            options.EngineSettings = result.GetValue(engineSet) ?? [];
            // Our relay subjects run this tool (`bench relay`), the engine subjects the daemon (`proxysel run`).
            options.RelayCommand = SelfCommand();
            options.Log = stderr;
            var errors = options.Validate();
            if (errors.Count > 0)
            {
                await stderr.WriteLineAsync(string.Join("; ", errors)).ConfigureAwait(false);
                return ExitCodes.Usage;
            }
            if (DaemonLocator.Resolve(result.GetValue(daemonPath), stderr) is not { } daemon)
            {
                return ExitCodes.DaemonNotFound;
            }

            options.EngineCommand = [daemon.File, .. daemon.Prefix];
            if (new PrerequisiteGate("bench", Prerequisites.BenchTools, MachineProbe.ThisMachine).Check(!result.GetValue(noInstall), stderr, stderr) is { } notReady)
            {
                return notReady;
            }

            var time = TimeProvider.System;
            BenchResults results;
            try
            {
                results = await new Benchmark(options, time).RunAsync(BenchSubject.Standard(includeEngine: true), cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is LabException or System.ComponentModel.Win32Exception or InvalidOperationException or TimeoutException or IOException)
            {
                // One line, not a stack trace: the namespaces are gone already (the benchmark disposes them).
                await stderr.WriteLineAsync($"proxysel-lab bench failed: {e.Message}").ConfigureAwait(false);
                return BenchFailed;
            }

            var file = result.GetValue(output)?.FullName
                ?? Path.GetFullPath($"bench-{time.GetUtcNow().ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture)}.json");
            await File.WriteAllTextAsync(file, BenchReport.ToFileText(results), CancellationToken.None).ConfigureAwait(false);
            await stdout.WriteAsync(BenchReport.ToTable(results)).ConfigureAwait(false);
            await stdout.WriteLineAsync($"results: {file}").ConfigureAwait(false);
            if (result.GetValue(json))
            {
                await stdout.WriteLineAsync(BenchReport.ToJsonLine(results)).ConfigureAwait(false);
            }
            return ExitCodes.Ok;
        });
        return command;
    }

    /// <summary>The run stopped on an error (said in one line).</summary>
    public const int BenchFailed = 1;

    private static (string, string)[] ParseSysctls(string[]? values) =>
        [.. (values ?? []).Select(s => s.Split('=', 2)).Where(p => p.Length == 2).Select(p => (p[0], p[1]))];

    /// <summary><c>proxysel-lab bench relay --listen A:P --upstream A:P --client-protocol tcp|mptcp</c> (hidden).</summary>
    private static Command CreateRelay()
    {
        var listen = new Option<string>("--listen") { Required = true, Description = "address:port to listen on (plain listener)" };
        var upstream = new Option<string>("--upstream") { Required = true, Description = "address:port every connection is relayed to (TCP)" };
        var protocol = new Option<string>("--client-protocol") { DefaultValueFactory = _ => "tcp", Description = "tcp or mptcp" };
        protocol.AcceptOnlyFromAmong("tcp", "mptcp");
        var splice = new Option<bool>("--splice") { Description = "Relay with splice(2) instead of user-space copies" };
        var readSize = new Option<int?>("--read-size") { Description = "Bytes per read (at least 65536)" };
        var command = new Command("relay", "Run our relay as a process for the bench") { listen, upstream, protocol, splice, readSize };
        command.Hidden = true;
        command.SetAction(async (result, cancellationToken) =>
        {
            if (!IPEndPoint.TryParse(result.GetValue(listen)!, out var l) || !IPEndPoint.TryParse(result.GetValue(upstream)!, out var u))
            {
                await result.InvocationConfiguration.Error.WriteLineAsync("--listen and --upstream take address:port").ConfigureAwait(false);
                return ExitCodes.Usage;
            }
            var client = result.GetValue(protocol) == "mptcp" ? TransportProtocol.Mptcp : TransportProtocol.Tcp;
            return await RelayProcess.RunAsync(l, u, client, result.InvocationConfiguration.Output, cancellationToken, result.GetValue(splice),
                    result.GetValue(readSize))
                .ConfigureAwait(false);
        });
        return command;
    }

    /// <summary>How to start this tool again (for <c>bench relay</c>): the apphost itself, or <c>dotnet proxysel-lab.dll</c>.</summary>
    private static string[] SelfCommand()
    {
        var process = Environment.ProcessPath ?? "dotnet";
        return Path.GetFileNameWithoutExtension(process) == "dotnet"
            ? [process, Assembly.GetEntryAssembly()!.Location]
            : [process];
    }
}
