using System.Diagnostics;
using System.Text.Json.Nodes;
using ProxySelection.Bench;

namespace ProxySelection.IntegrationTests.Bench;

/// <summary>
/// The lab benchmark in --quick mode end to end: it completes, every subject produced its figures, and the JSON line has
/// the ratio keys. No timing or ratio is asserted (speed belongs to the benchmark's own output, not to a test).
/// </summary>
[TestFixture]
public sealed class BenchQuickRunTests
{
    private static readonly string[] RequiredKeys =
    [
        "holding_vs_haproxy_throughput",
        "holding_vs_direct_throughput",
        "passthrough_vs_direct_throughput",
        "holding_vs_haproxy_cpu_per_gb",
        "conn_rate_vs_haproxy",
    ];

    [Test]
    [CancelAfter(240_000)]
    public async Task QuickRun_EverySubject_ProducesThroughputConnectionRateAndTheJsonKeys(CancellationToken cancellationToken)
    {
        using var log = new StringWriter();
        var options = BenchOptions.QuickDefaults();
        options.RelayCommand = await RelayCommandAsync();
        options.EngineCommand = ProxyselCommand();
        bool relayAsProcess = options.RelayCommand.Count > 0;
        await TestContext.Out.WriteLineAsync(relayAsProcess ? "relay: its own process (proxysel-lab bench relay)" : "relay: in-process (proxysel-lab bench relay did not answer)");
        options.Log = log;
        var subjects = BenchSubject.Standard(includeEngine: true);

        var results = await new Benchmark(options, TimeProvider.System).RunAsync(subjects, cancellationToken).WaitAsync(TimeSpan.FromSeconds(200), cancellationToken);
        var json = JsonNode.Parse(BenchReport.ToJsonLine(results))!.AsObject();
        await TestContext.Out.WriteLineAsync(log.ToString());
        await TestContext.Out.WriteLineAsync(BenchReport.ToTable(results));

        Assert.Multiple(() =>
        {
            Assert.That(results.Subjects.Select(s => s.Subject.Name), Is.EquivalentTo(subjects.Select(s => s.Name)));
            foreach (var s in results.Subjects)
            {
                Assert.That(s.Errors, Is.Empty, s.Subject.Name);
                Assert.That(s.ThroughputBps, Has.Count.EqualTo(1), $"{s.Subject.Name} unlimited throughput");
                Assert.That(s.ThroughputBps1G, Has.Count.EqualTo(1), $"{s.Subject.Name} throughput at 1 Gbit/s");
                Assert.That(s.ConnectionsPerSecond, Has.Count.EqualTo(1), $"{s.Subject.Name} connection rate");
                Assert.That(s.LatencyP99Ms, Has.Count.EqualTo(1), $"{s.Subject.Name} p99 latency");
                Assert.That(s.ConnectP99Us, Has.Count.EqualTo(1), $"{s.Subject.Name} connect time (SYN decision)");
                if (s.Subject.HasProcess)
                {
                    Assert.That(s.CpuSecondsPerGb, Has.Count.EqualTo(1), $"{s.Subject.Name} CPU per GB");
                }
                if (s.Subject.MeasuresIdleMemory && (relayAsProcess || s.Subject is not RelaySubject))
                {
                    Assert.That(s.IdleBytesPerConnection, Is.Not.Null, $"{s.Subject.Name} idle memory");
                    Assert.That(s.IdleConnectionsHeld, Is.EqualTo(options.IdleConnections), $"{s.Subject.Name} idle connections held");
                }
            }
            foreach (var key in RequiredKeys.Concat(BenchReport.RatioKeys))
            {
                Assert.That(json.ContainsKey(key), Is.True, key);
            }
            // Measured in this run, so the ratios are numbers; pass-through needs the engine and stays null until then.
            foreach (var key in RequiredKeys.Where(k => k != "passthrough_vs_direct_throughput"))
            {
                Assert.That(json[key], Is.Not.Null, key);
            }
            Assert.That(json["subjects"]!.AsObject().Count, Is.EqualTo(subjects.Count));
            Assert.That(results.EngineSynLatency, Is.Not.Null, "the engine's syn decision latency line");
            Assert.That(results.EngineSynLatency!.ImmediateCount, Is.GreaterThan(0), "SYNs decided at once");
            Assert.That(json["goals"]!.AsObject().Count, Is.EqualTo(16));
            Assert.That(json["machine"]!["kernel"]!.GetValue<string>(), Is.Not.Empty);
        });
    }

    /// <summary>
    /// The relay runs as its own process through the hidden <c>proxysel-lab bench relay</c> verb (proxysel-lab.dll is
    /// copied next to the tests by the LabTool project reference); the engine subject runs the daemon, proxysel.dll.
    /// Empty (in-process relay, idle memory not measured for it) if the verb does not answer.
    /// </summary>
    private static async Task<IReadOnlyList<string>> RelayCommandAsync()
    {
        var command = DotnetCommand("proxysel-lab.dll");
        var (dotnet, dll) = (command[0], command[1]);
        // "--help" exits 0 even for an unknown verb; bad endpoints reach the verb's own message only when it exists.
        using var probe = Process.Start(new ProcessStartInfo(dotnet, [dll, "bench", "relay", "--listen", "x", "--upstream", "y"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        })!;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        string stderr = await probe.StandardError.ReadToEndAsync(cts.Token);
        await probe.WaitForExitAsync(cts.Token);
        return stderr.Contains("take address:port", StringComparison.Ordinal) ? command : [];
    }

    /// <summary><c>dotnet proxysel.dll</c> (the daemon), copied next to the tests by the Host project reference.</summary>
    private static string[] ProxyselCommand() => DotnetCommand("proxysel.dll");

    private static string[] DotnetCommand(string file)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, file);
        Assert.That(File.Exists(dll), Is.True, dll);
        var dotnet = Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : "dotnet";
        return [dotnet, dll];
    }
}
