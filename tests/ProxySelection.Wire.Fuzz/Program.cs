using System.Globalization;

namespace ProxySelection.Wire.Fuzz;

/// <summary>
/// <c>dotnet run -c Release --project tests/ProxySelection.Wire.Fuzz -- --count 1000000 --seed 1 [--vectors DIR] [--minutes M]</c>.
/// Exit 0 when no input crashed, 1 on a crash (the input is printed as hex), 2 on a bad command line.
/// </summary>
internal static class Program
{
    public static int Main(string[] args)
    {
        long count = 1_000_000;
        int seed = 1;
        string? vectors = null;
        TimeSpan? limit = null;
        for (int i = 0; i < args.Length; i++)
        {
            string? value = i + 1 < args.Length ? args[i + 1] : null;
            switch (args[i])
            {
                case "--count" when long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out count):
                case "--seed" when int.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out seed):
                    i++;
                    break;
                case "--vectors" when value is not null && Directory.Exists(value):
                    vectors = value;
                    i++;
                    break;
                case "--minutes" when double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var minutes) && minutes > 0:
                    limit = TimeSpan.FromMinutes(minutes);
                    i++;
                    break;
                default:
                    Console.Error.WriteLine($"bad argument '{args[i]}'. Usage: --count N --seed S [--vectors DIR] [--minutes M]");
                    return 2;
            }
        }

        var corpus = FuzzHarness.Corpus(vectors);
        Console.WriteLine($"fuzz: seed {seed}, {count:N0} inputs, corpus {corpus.Count} packets{(vectors is null ? "" : $" (+ {vectors})")}");
        var report = FuzzHarness.Run(seed, count, corpus, timeLimit: limit,
            progress: n => Console.Error.WriteLine($"fuzz: {n:N0} inputs"));
        Console.WriteLine($"fuzz: {report.Inputs:N0} inputs in {report.Elapsed.TotalSeconds:F1} s, {report.Parsed:N0} parsed as TCP packets");
        Console.WriteLine($"fuzz:   {report.Depth.Options:N0} options walked, {report.Depth.MptcpParsed:N0} MPTCP options parsed and written back, " +
                          $"{report.Depth.MptcpRefused:N0} refused, {report.Depth.Inserts:N0} option inserts");
        foreach (var (error, n) in report.Rejected.OrderByDescending(p => p.Value))
        {
            Console.WriteLine($"fuzz:   rejected {error}: {n:N0}");
        }

        if (report.Crash is { } crash)
        {
            Console.WriteLine($"fuzz: CRASH {crash}");
            return 1;
        }

        Console.WriteLine("fuzz: no crash");
        return 0;
    }
}
