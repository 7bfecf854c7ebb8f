using System.IO.Compression;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Packaging;

/// <summary>
/// Issue 15 item 5: the Debian package that src/ProxySelection.Host/packaging/build-deb.sh builds installs a daemon
/// that starts from the shipped configuration, and <c>dpkg -r</c> / <c>--purge</c> leave no file and no rule behind.
/// This machine's dpkg database is real: the test refuses to run where a proxysel package (or its configuration) is
/// already present, and purges what it installed whatever happens.
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class DebianPackageTests
{
    private const string Package = "proxysel";
    private const string Conffile = "/etc/proxysel/proxysel.json";
    private const string UnitPath = "/lib/systemd/system/proxysel.service";

    /// <summary>dpkg, iptables, the installed binary: each well under this.</summary>
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromSeconds(60);

    /// <summary>The script publishes the daemon: ~10 s when the Release build is current, ~2 min from a cold cache on 2 cores.</summary>
    private static readonly TimeSpan BuildTimeout = TimeSpan.FromMinutes(5);

    /// <summary>The daemon's start (rules in) and its stop with nothing held to drain.</summary>
    private static readonly TimeSpan DaemonTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Whether the assembly carries ReadyToRun code: its CLI header's managed native header (the R2R header) is present.</summary>
    private static bool IsReadyToRun(string path)
    {
        using var pe = new System.Reflection.PortableExecutable.PEReader(File.OpenRead(path));
        return pe.PEHeaders.CorHeader is { ManagedNativeHeaderDirectory.Size: > 0 };
    }

    [Test]
    public async Task BuildInstallRunRemovePurge_ShippedConfigurationRuns_RemovalLeavesNoFileAndNoRule()
    {
        await RequireNoProxyselAsync();
        var directory = Directory.CreateTempSubdirectory("psel-deb-").FullName;
        bool installed = false;
        bool planted = false;
        try
        {
            var started = DateTime.UtcNow;
            var script = Path.Combine(RepositoryRoot(), "src", "ProxySelection.Host", "packaging", "build-deb.sh");
            var build = await LabCommand.RunAsync(script, [directory], BuildTimeout);
            Assert.That(build.ExitCode, Is.Zero, build.StdErr + build.StdOut);
            var deb = build.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1].Trim();
            TestContext.Progress.WriteLine($"build-deb.sh: {deb} in {(DateTime.UtcNow - started).TotalSeconds:F0} s");
            Assert.That(File.Exists(deb), Is.True, build.StdOut);

            // What the package will create, and which of those paths this machine has already (/usr, /usr/bin, ...).
            var packaged = await PackagedPathsAsync(deb);
            var existedBefore = packaged.Where(Exists).ToHashSet(StringComparer.Ordinal);
            Assert.That(existedBefore, Does.Not.Contain("/usr/lib/proxysel").And.Not.Contains(Conffile));

            installed = true;
            await DpkgAsync("-i", deb);
            var listed = (await CheckAsync("dpkg", ["-L", Package])).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Where(p => p != "/.").ToHashSet(StringComparer.Ordinal);
            var version = (await CheckAsync("dpkg-query", ["-W", "-f=${Version}", Package])).Trim();
            var conffiles = await CheckAsync("dpkg-query", ["-W", "-f=${Conffiles}", Package]);
            var versionLine = await CheckAsync("/usr/bin/proxysel", ["--version"]);
            var rootHelp = await CheckAsync("/usr/bin/proxysel", ["--help"]);
            var manPage = ReadGzip("/usr/share/man/man1/proxysel.1.gz");
            Assert.Multiple(() =>
            {
                Assert.That(listed, Is.EquivalentTo(packaged), "dpkg -L lists what the archive holds");
                Assert.That(listed, Is.SupersetOf(new[] { "/usr/bin/proxysel", "/usr/lib/proxysel/proxysel", Conffile, UnitPath, "/usr/share/man/man1/proxysel.1.gz" }));
                Assert.That(conffiles, Does.Contain(Conffile), "the configuration is a conffile");
                Assert.That(versionLine, Does.StartWith(version), "the installed binary runs and reports the package's version");
                Assert.That(File.ResolveLinkTarget("/usr/bin/proxysel", returnFinalTarget: true)?.FullName, Is.EqualTo("/usr/lib/proxysel/proxysel"));
                foreach (var assembly in (string[])["proxysel", "ProxySelection.Wire", "ProxySelection.Negotiation", "ProxySelection.Interception", "ProxySelection.Relay", "ProxySelection.Engine"])
                {
                    Assert.That(IsReadyToRun($"/usr/lib/proxysel/{assembly}.dll"), Is.True, $"{assembly}.dll is precompiled (ReadyToRun) in the package (issue 13, warm start)");
                }

                foreach (var verb in Verbs(rootHelp))
                {
                    Assert.That(manPage, Does.Contain($".SS \"proxysel {verb}\""), $"the man page has {verb}'s --help");
                }

                Assert.That(UnitDirectives(File.ReadAllText(UnitPath)),
                    Is.EqualTo(UnitDirectives(File.ReadAllText(Path.Combine(RepositoryRoot(), "samples", "proxysel.service")).Replace("/usr/local/bin/", "/usr/bin/", StringComparison.Ordinal))),
                    "the packaged unit is the sample's with the installed path");
            });

            await RunShippedConfigurationAsync();

            // A crashed daemon's leftovers in the root namespace (empty chains, a jump that returns at once: no effect on
            // this host's traffic): prerm's cleanup must take them out while the binary is still installed.
            planted = true;
            await PlantLeftoverChainsAsync();
            Assert.That(await RootChainsAsync(), Is.Not.Empty, "the planted chains are there before the removal");

            await DpkgAsync("-r", Package);
            var afterRemove = await CheckAsync("dpkg-query", ["-W", "-f=${Status}", Package]);
            var remainingAfterRemove = listed.Where(p => !existedBefore.Contains(p) && Exists(p)).ToList();
            var chainsAfterRemove = await RootChainsAsync();
            Assert.Multiple(() =>
            {
                Assert.That(afterRemove, Is.EqualTo("deinstall ok config-files"));
                Assert.That(remainingAfterRemove, Is.EquivalentTo(new[] { "/etc/proxysel", Conffile }.Where(p => !existedBefore.Contains(p))),
                    "only the conffile (and its folder) stays after dpkg -r");
                Assert.That(chainsAfterRemove, Is.Empty, "prerm ran proxysel cleanup in the root namespace");
            });

            await DpkgAsync("--purge", Package);
            installed = false;
            var status = await LabCommand.RunAsync("dpkg", ["-s", Package], CommandTimeout);
            var remainingAfterPurge = listed.Where(p => !existedBefore.Contains(p) && Exists(p)).ToList();
            TestContext.Progress.WriteLine($"package test: {(DateTime.UtcNow - started).TotalSeconds:F0} s");
            Assert.Multiple(() =>
            {
                Assert.That(status.ExitCode, Is.Not.Zero);
                Assert.That(status.StdErr, Does.Contain("is not installed"));
                Assert.That(remainingAfterPurge, Is.Empty, "dpkg --purge leaves no file of the package");
            });
        }
        finally
        {
            if (installed)
            {
                await LabCommand.RunAsync("dpkg", ["--purge", Package], CommandTimeout);
            }

            if (planted)
            {
                await RemovePlantedChainsAsync();
            }

            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>
    /// No validate verb exists: <c>proxysel run --config /etc/proxysel/proxysel.json</c> in a namespace of its own until
    /// its rules are in, then SIGTERM by pid; it must exit 0 and take its rules with it.
    /// </summary>
    private static async Task RunShippedConfigurationAsync()
    {
        await using var lab = ProxySelection.Lab.Lab.Create();
        var ns = await lab.AddNamespaceAsync("deb");
        var daemon = ns.StartProcess("/usr/bin/proxysel", ["run", "--config", Conffile]);
        try
        {
            await daemon.WaitForOutputAsync("proxysel: running", DaemonTimeout);
            var rules = await ns.CheckAsync("iptables-save", ["-t", "mangle"], CommandTimeout);
            Assert.That(rules, Does.Contain(":PSEL_TPROXY"), "the shipped configuration installed its rules");
        }
        finally
        {
            await daemon.StopAsync(DaemonTimeout);
            TestContext.Progress.WriteLine(daemon.Output);
        }

        var after = await ns.CheckAsync("iptables-save", [], CommandTimeout);
        Assert.Multiple(() =>
        {
            Assert.That(daemon.ExitCode, Is.Zero, daemon.Output);
            Assert.That(daemon.Output, Does.Contain("proxysel: stopped"));
            Assert.That(after, Does.Not.Contain("PSEL"));
        });
    }

    /// <summary>Fails, touching nothing, where a proxysel package, its configuration or a proxysel's root-namespace rules exist.</summary>
    private static async Task RequireNoProxyselAsync()
    {
        var status = await LabCommand.RunAsync("dpkg-query", ["-W", "-f=${Status}", Package], CommandTimeout);
        if (status.ExitCode == 0 && !status.StdOut.Contains("not-installed", StringComparison.Ordinal))
        {
            Assert.Fail($"a package named {Package} is on this machine ({status.StdOut.Trim()}): this test installs and purges its own, so it "
                + $"refuses to clobber it; remove it first (dpkg --purge {Package}) or run the test elsewhere");
        }

        if (Exists(Conffile) || Exists("/usr/lib/proxysel"))
        {
            Assert.Fail($"{Conffile} or /usr/lib/proxysel exists without the package (a hand install?): the test would overwrite it");
        }

        var chains = await RootChainsAsync();
        if (chains.Count > 0)
        {
            Assert.Fail($"the root namespace has proxysel chains ({string.Join(", ", chains)}): a proxysel runs here, and the package's prerm would remove its rules");
        }
    }

    private static async Task<IReadOnlySet<string>> PackagedPathsAsync(string deb)
    {
        // "./usr/bin/proxysel -> ../lib/proxysel/proxysel" and "./etc/" alike: the path field, without "." and the link target.
        var listing = await CheckAsync("dpkg-deb", ["--contents", deb]);
        var paths = new HashSet<string>(StringComparer.Ordinal);
        foreach (var line in listing.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var path = fields[5].TrimStart('.').TrimEnd('/');
            if (path.Length > 0)
            {
                paths.Add(path);
            }
        }

        return paths;
    }

    private static async Task PlantLeftoverChainsAsync()
    {
        foreach (var tool in (string[])["iptables", "ip6tables"])
        {
            await CheckAsync(tool, ["-t", "mangle", "-N", "PSEL_QUEUE"]);
            await CheckAsync(tool, ["-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "--dport", "9", "-j", "PSEL_QUEUE"]);
        }
    }

    /// <summary>Only after a failure before dpkg -r: the planted chains by their exact names.</summary>
    private static async Task RemovePlantedChainsAsync()
    {
        foreach (var tool in (string[])["iptables", "ip6tables"])
        {
            await LabCommand.RunAsync(tool, ["-t", "mangle", "-D", "PREROUTING", "-p", "tcp", "--dport", "9", "-j", "PSEL_QUEUE"], CommandTimeout);
            await LabCommand.RunAsync(tool, ["-t", "mangle", "-X", "PSEL_QUEUE"], CommandTimeout);
        }
    }

    /// <summary>Chains and jumps named PSEL_* in the root namespace, IPv4 and IPv6, every table.</summary>
    private static async Task<IReadOnlyList<string>> RootChainsAsync()
    {
        var found = new List<string>();
        foreach (var tool in (string[])["iptables-save", "ip6tables-save"])
        {
            var saved = await CheckAsync(tool, []);
            found.AddRange(saved.Split('\n').Where(l => l.Contains("PSEL_", StringComparison.Ordinal)).Select(l => tool + ": " + l.Trim()));
        }

        return found;
    }

    /// <summary>dpkg, waiting (bounded) while another dpkg or apt on this machine holds its lock.</summary>
    private static async Task DpkgAsync(params string[] args)
    {
        for (int attempt = 0; ; attempt++)
        {
            var result = await LabCommand.RunAsync("dpkg", args, CommandTimeout);
            if (result.ExitCode == 0)
            {
                TestContext.Progress.WriteLine($"dpkg {string.Join(' ', args)}: {result.StdOut.Trim()} {result.StdErr.Trim()}");
                return;
            }

            if (attempt >= 30 || !result.StdErr.Contains("lock", StringComparison.OrdinalIgnoreCase))
            {
                Assert.Fail($"dpkg {string.Join(' ', args)} exited {result.ExitCode}: {result.StdErr}{result.StdOut}");
            }

            await Task.Delay(TimeSpan.FromSeconds(2));
        }
    }

    private static Task<string> CheckAsync(string file, IEnumerable<string> args) => LabCommand.CheckAsync(file, args, CommandTimeout);

    /// <summary>A file, a folder, or a symlink (dangling ones included: File.Exists follows the link).</summary>
    private static bool Exists(string path) => File.Exists(path) || Directory.Exists(path) || new FileInfo(path).LinkTarget is not null;

    private static string ReadGzip(string path)
    {
        using var file = File.OpenRead(path);
        using var gzip = new GZipStream(file, CompressionMode.Decompress);
        using var reader = new StreamReader(gzip);
        return reader.ReadToEnd();
    }

    /// <summary>The verbs under "Commands:" in a System.CommandLine help text.</summary>
    private static IReadOnlyList<string> Verbs(string help) =>
        [.. help.Split('\n').SkipWhile(l => !l.StartsWith("Commands:", StringComparison.Ordinal)).Skip(1)
            .TakeWhile(l => l.Length == 0 || l.StartsWith(' ')).Where(l => l.Trim().Length > 0).Select(l => l.Trim().Split(' ')[0])];

    /// <summary>A unit's lines without comments and blanks.</summary>
    private static IReadOnlyList<string> UnitDirectives(string unit) =>
        [.. unit.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#'))];

    private static string RepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Directory.Packages.props")))
            {
                return directory.FullName;
            }
        }

        throw new DirectoryNotFoundException("the repository root not found above " + AppContext.BaseDirectory);
    }
}
