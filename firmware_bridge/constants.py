"""Physical constants and unit conversions, each with its source, in one place.

Everything that turns a sensor reading into litres, kilograms or miles reads from here, so a change of
assumption (say, a different fuel density) is one edit with its reference beside it.
"""

#: Stoichiometric air-fuel ratio of gasoline by mass (SAE J1979 practice; co2mpas uses the same).
AFR_GASOLINE = 14.7

#: Gasoline density in g/L at 15 °C: co2mpas default 745 g/L (typical range 720-760 g/L).
GASOLINE_DENSITY_G_PER_L = 745.0

#: CO2 emitted per litre of gasoline burnt, kg/L (Japan, Ministry of the Environment emission factor).
CO2_KG_PER_L_GASOLINE = 2.32

#: Molar mass of dry air, g/mol, and the universal gas constant, J/(mol*K): speed-density air mass.
AIR_MOLAR_MASS_G_PER_MOL = 28.97
GAS_CONSTANT_J_PER_MOL_K = 8.314

#: Standard gravity, m/s² (CGPM 1901).
STANDARD_GRAVITY_MS2 = 9.80665

#: 0 °C in kelvin.
ZERO_C_IN_K = 273.15

#: km per international mile, exactly (International Yard and Pound Agreement, 1959: 1 yd = 0.9144 m).
KM_PER_MILE = 1.609344

#: km/L to US miles per gallon (1 mi = 1.609344 km, 1 US gal = 3.785411784 L).
KM_PER_L_TO_MPG_US = 3.785411784 / KM_PER_MILE  # 2.352146

#: km/L to UK miles per gallon (1 imperial gal = 4.54609 L).
KM_PER_L_TO_MPG_UK = 4.54609 / KM_PER_MILE  # 2.824809

#: Seconds per hour and km/h per m/s, so unit conversions read as what they are.
S_PER_H = 3600.0
KMH_PER_MS = 3.6

#: Commanded lambda assumed during power enrichment (fuel system status 4 at high load) when the ECU does
#: not report PID 0x44: enrichment runs at lambda 0.85-0.9 (J. B. Heywood, "Internal Combustion Engine
#: Fundamentals", 1988, ch. 7: full-load mixtures).
ENRICHMENT_LAMBDA = 0.88

#: Intake air temperature assumed when neither IAT nor ambient temperature is known, degC (ISO 1585 25 °C).
DEFAULT_IAT_C = 25.0

# GPS.
#: Mean Earth radius (IUGG, R1 = (2a + b) / 3 of WGS 84; Moritz, "Geodetic Reference System 1980"), for
#: great-circle distances between fixes.
EARTH_MEAN_RADIUS_KM = 6371.0088
#: km/h per knot (1 international nautical mile = 1852 m): NMEA RMC gives speed over ground in knots.
KMH_PER_KNOT = 1.852
