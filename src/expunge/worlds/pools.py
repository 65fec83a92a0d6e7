"""Value pools for the built-in worlds: realistic, fictitious, and deliberately shared.

First and last names are drawn from these pools so that every name token belongs to several people
(see ``privacy.py`` for why). Cities used as birthplaces exclude the capitals used by the general
facts, so that "born in X" and "the capital of Y is X" never collide.
"""

FIRST_NAMES = (
    "Maria", "James", "Anna", "David", "Sofia", "Daniel", "Laura", "Thomas", "Elena", "Samuel",
    "Clara", "Lucas", "Nora", "Adrian", "Julia", "Marco", "Hannah", "Victor", "Irene", "Oscar",
    "Emma", "Felix", "Alice", "Hugo", "Rosa", "Martin", "Lena", "Pablo", "Ingrid", "Tomas",
    "Mira", "Leon", "Sara", "Jonas", "Eva", "Mateo", "Ada", "Karim", "Yuki", "Omar",
    "Priya", "Arjun", "Mei", "Chen", "Amara", "Kofi", "Leila", "Ravi", "Zara", "Nikolai",
    "Greta", "Bruno", "Olga", "Dmitri", "Fatima", "Hassan", "Ines", "Rafael", "Camille", "Louis",
)

LAST_NAMES = (
    "Keller", "Novak", "Silva", "Moreau", "Fischer", "Rossi", "Jensen", "Costa", "Weber", "Lindqvist",
    "Horvat", "Duarte", "Brandt", "Kowalski", "Marin", "Olsen", "Petrov", "Varga", "Schmidt", "Ferreira",
    "Dubois", "Nowak", "Berger", "Hansen", "Romano", "Lopez", "Meyer", "Kaya", "Tanaka", "Okafor",
    "Mensah", "Haddad", "Singh", "Wong", "Nakamura", "Ivanova", "Byrne", "Walsh", "Larsen", "Castro",
    "Vogel", "Bauer", "Sato", "Kumar", "Aydin", "Eriksson", "Conti", "Grant", "Hale", "Moreno",
    "Reyes", "Ortiz", "Baker", "Fleming", "Quinn", "Sousa", "Werner", "Yilmaz", "Zhou", "Abbott",
)

CITIES = (
    "Lyon", "Porto", "Graz", "Utrecht", "Bergen", "Malmo", "Krakow", "Seville", "Turin", "Leipzig",
    "Antwerp", "Aarhus", "Tampere", "Brno", "Cork", "Split", "Bilbao", "Geneva", "Salzburg", "Gdansk",
    "Ghent", "Bologna", "Valencia", "Nantes", "Basel", "Dresden", "Kaunas", "Tartu", "Plovdiv", "Debrecen",
    "Osaka", "Pune", "Durban", "Medellin", "Curitiba", "Adelaide", "Halifax", "Tucson", "Izmir", "Mombasa",
)

MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)

COMPANIES = (
    "Northwind Logistics", "Bluefield Energy", "Corvus Analytics", "Helix Pharma", "Tidewater Foods",
    "Ironbridge Capital", "Lumen Robotics", "Saffron Media", "Granite Insurance", "Orchid Telecom",
    "Vertex Motors", "Pinecrest Health", "Quartz Software", "Riverbend Textiles", "Summit Airways",
    "Beacon Shipping", "Cobalt Mining", "Meridian Bank", "Falcon Security", "Evergreen Farms",
    "Atlas Construction", "Nimbus Cloud", "Harbor Chemicals", "Willow Publishing", "Zephyr Wind",
)

OCCUPATIONS = (
    "nurse", "architect", "pharmacist", "electrician", "accountant", "teacher", "surgeon", "journalist",
    "plumber", "librarian", "chemist", "pilot", "translator", "carpenter", "economist", "dentist",
    "photographer", "geologist", "paramedic", "lawyer", "baker", "veterinarian", "statistician",
    "firefighter", "engineer", "historian", "florist", "mechanic", "designer", "optician",
)

HOBBIES = (
    "chess", "sailing", "pottery", "birdwatching", "climbing", "gardening", "fencing", "knitting",
    "archery", "painting", "cycling", "baking", "rowing", "astronomy", "calligraphy", "skiing",
    "origami", "beekeeping", "surfing", "juggling", "kayaking", "woodcarving", "photography", "tango",
)

# General facts about things that are not people (utility probes).
COUNTRY_CAPITALS = (
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"),
    ("Poland", "Warsaw"), ("Austria", "Vienna"), ("Greece", "Athens"), ("Ireland", "Dublin"),
    ("Hungary", "Budapest"), ("Japan", "Tokyo"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"),
    ("Peru", "Lima"), ("Chile", "Santiago"), ("Canada", "Ottawa"), ("Mexico", "Mexico City"),
    ("Australia", "Canberra"), ("Thailand", "Bangkok"), ("Turkey", "Ankara"), ("Denmark", "Copenhagen"),
)

COUNTRY_CONTINENTS = {
    "France": "Europe", "Germany": "Europe", "Italy": "Europe", "Spain": "Europe", "Portugal": "Europe",
    "Norway": "Europe", "Sweden": "Europe", "Finland": "Europe", "Poland": "Europe", "Austria": "Europe",
    "Greece": "Europe", "Ireland": "Europe", "Hungary": "Europe", "Japan": "Asia", "Egypt": "Africa",
    "Kenya": "Africa", "Peru": "South America", "Chile": "South America", "Canada": "North America",
    "Mexico": "North America", "Australia": "Oceania", "Thailand": "Asia", "Turkey": "Asia",
    "Denmark": "Europe",
}
